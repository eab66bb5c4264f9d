/* Test helper for tests/memfs (file handles across dropped caches, xfstests generic/426's
 * scenario): `handles MOUNT FILE DIR` takes handles of FILE and DIR, drops the kernel's
 * caches, opens both by handle, then deletes FILE and tries its handle again. It prints one
 * line per step; the test compares memfs's lines with tmpfs's. Written for this project. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct file_handle *handle_of(const char *path) {
    struct file_handle *fh = malloc(sizeof(*fh) + MAX_HANDLE_SZ);
    int mount_id;
    fh->handle_bytes = MAX_HANDLE_SZ;
    if (name_to_handle_at(AT_FDCWD, path, fh, &mount_id, 0) != 0) {
        printf("name_to_handle_at %s: errno %d\n", path, errno);
        exit(1);
    }
    return fh;
}

static void drop_caches(void) {
    sync();
    int fd = open("/proc/sys/vm/drop_caches", O_WRONLY);
    if (fd < 0 || write(fd, "3", 1) != 1) {
        printf("drop_caches: errno %d\n", errno);
        exit(1);
    }
    close(fd);
}

static void open_by(const char *what, int mount_fd, struct file_handle *fh, int flags) {
    int fd = open_by_handle_at(mount_fd, fh, flags);
    if (fd < 0) {
        printf("%s: errno %d\n", what, errno);
        return;
    }
    char buf[64] = {0};
    if (!(flags & O_DIRECTORY)) {
        ssize_t n = read(fd, buf, sizeof(buf) - 1);
        printf("%s: read %zd \"%s\"\n", what, n, n > 0 ? buf : "");
    } else {
        printf("%s: opened\n", what);
    }
    close(fd);
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: handles MOUNT FILE DIR\n");
        return 2;
    }
    int mount_fd = open(argv[1], O_RDONLY | O_DIRECTORY);
    if (mount_fd < 0) {
        printf("open %s: errno %d\n", argv[1], errno);
        return 1;
    }
    struct file_handle *file = handle_of(argv[2]);
    struct file_handle *dir = handle_of(argv[3]);
    drop_caches();
    open_by("file after drop_caches", mount_fd, file, O_RDONLY);
    open_by("dir after drop_caches", mount_fd, dir, O_RDONLY | O_DIRECTORY);
    if (unlink(argv[2]) != 0) {
        printf("unlink: errno %d\n", errno);
        return 1;
    }
    drop_caches();
    open_by("file after unlink", mount_fd, file, O_RDONLY);
    return 0;
}
