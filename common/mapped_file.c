/* mapped_file.c — read-only mmap of a whole file. */
#include "common/mapped_file.h"
#include "common/error.h"
#include "common/file_util.h"

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
    int fd;
    struct stat st;
    KVZ_TRY(kvz_open_regular_file(path, &fd, &st));
    if (st.st_size > 0) {
        void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            int e = errno;
            close(fd);
            return kvz_errorf(e == ENOMEM ? KVZ_ERR_NOMEM : KVZ_ERR_IO, "cannot map '%s': %s%s", path, strerror(e),
                              e == ENOMEM ? " (the address space this process may use: ulimit -v)" : "");
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
