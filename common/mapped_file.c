/* mapped_file.c — read-only mmap of a whole file. */
#include "common/mapped_file.h"
#include "common/error.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

int kvz_mapped_file_open(kvz_mapped_file *file, const char *path)
{
    file->data = NULL;
    file->size = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK); /* a FIFO would block the open until a writer came */
    if (fd < 0)
        return kvz_errorf(errno == ENOENT ? KVZ_ERR_NOT_FOUND : KVZ_ERR_IO, "cannot open '%s': %s", path,
                          strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return kvz_errorf(KVZ_ERR_IO, "cannot stat '%s': %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return kvz_errorf(KVZ_ERR_IO, "'%s' is not a regular file", path);
    }
    if (st.st_size > 0) {
        void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            int e = errno;
            close(fd);
            return kvz_errorf(KVZ_ERR_IO, "cannot map '%s': %s", path, strerror(e));
        }
        file->data = p;
        file->size = (size_t)st.st_size;
    }
    close(fd);
    return KVZ_OK;
}

void kvz_mapped_file_close(kvz_mapped_file *file)
{
    if (file->data)
        munmap((void *)file->data, file->size);
    file->data = NULL;
    file->size = 0;
}
