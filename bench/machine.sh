#!/bin/sh
# One line naming the CPU for a benchmark's header: lscpu's model name, which
# cloud machines often cut to the vendor ("AMD EPYC"), with the family and
# model numbers and the widest vector extension, which tell the generations
# apart (AMD family 23: Zen 1/2, 25: Zen 3/4), and the cores.
name=$(lscpu | sed -n 's/^Model name: *//p')
family=$(lscpu | sed -n 's/^CPU family: *//p')
model=$(lscpu | sed -n 's/^Model: *//p')
flags=$(lscpu | sed -n 's/^Flags: *//p')
case " $flags " in
*" avx512f "*) vector=AVX-512 ;;
*" avx2 "*) vector=AVX2 ;;
*) vector="no AVX2" ;;
esac
echo "$name (family ${family:-?} model ${model:-?}, $vector), $(nproc) cores"
