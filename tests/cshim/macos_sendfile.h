/* Test shim: macOS declares sendfile(2) in <sys/socket.h> with this signature. */
#include <sys/types.h>
struct sf_hdtr;
int sendfile(int fd, int s, off_t offset, off_t *len, struct sf_hdtr *hdtr, int flags);
