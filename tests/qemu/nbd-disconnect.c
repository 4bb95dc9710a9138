// SPDX-License-Identifier: MIT
/* Disconnects a kernel NBD device from outside, as 'nbd-client -d' does:
 * NBD_DISCONNECT, then NBD_CLEAR_SOCK. Built by tests/qemu/nbdvm.py for the
 * guest of the kernel NBD test (busybox has no nbd-client applet). */
#include <fcntl.h>
#include <linux/nbd.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <unistd.h>

int main(int argc, char **argv)
{
        if (argc != 2) {
                fprintf(stderr, "usage: nbd-disconnect /dev/nbdN\n");
                return 2;
        }
        int fd = open(argv[1], O_RDWR);
        if (fd < 0) {
                perror(argv[1]);
                return 1;
        }
        if (ioctl(fd, NBD_DISCONNECT) < 0) {
                perror("NBD_DISCONNECT");
                return 1;
        }
        if (ioctl(fd, NBD_CLEAR_SOCK) < 0) {
                perror("NBD_CLEAR_SOCK");
                return 1;
        }
        close(fd);
        return 0;
}
