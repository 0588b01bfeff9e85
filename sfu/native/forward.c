/* The forwarding kernel's native half: SRTP-protect a batch of RTP packets and send them with one sendmmsg.
 *
 * Python hands over what one incoming packet became for all of its viewers (each rewritten for its viewer),
 * with each viewer's SRTP session and address; this protects each with libsrtp and sends the whole batch in
 * one system call on the node's one UDP socket. Per packet and viewer that saves the Python-level protect
 * wrapper (two copies and a cffi call) and a sendto system call.
 *
 * libsrtp is the one pylibsrtp already carries (linked statically into its own module): Python passes the
 * address of its srtp_protect and of each session, so nothing here links against libsrtp, and the sessions
 * are the very ones aiortc keyed from DTLS. The Python fallback (sfu/native/reference.py) does the same
 * steps one by one and is the reference the tests compare this with, byte for byte.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#define SLOT_BYTES 2048          /* an RTP packet (under the path MTU) plus libsrtp's largest trailer (144) */
#define SRTP_MAX_TRAILER 144
#define BATCH_MAX 1024           /* packets per call at most: the arena's size */

typedef int (*srtp_protect_fn)(void *ctx, void *rtp, int *len);

static unsigned char arena[BATCH_MAX][SLOT_BYTES];
static struct mmsghdr msgs[BATCH_MAX];
static struct iovec iovs[BATCH_MAX];
static struct sockaddr_storage addrs[BATCH_MAX];
static int slot_of[BATCH_MAX];   /* message i carries the item slot_of[i] */

PyDoc_STRVAR(sockaddr_doc,
"sockaddr(host, port) -> bytes\n\n"
"The socket address (struct sockaddr_in or sockaddr_in6) for a numeric host and a port, as protect_send takes it.");

static PyObject *py_sockaddr(PyObject *self, PyObject *args) {
    const char *host;
    int port;
    if (!PyArg_ParseTuple(args, "si", &host, &port))
        return NULL;
    if (port < 0 || port > 65535) {
        PyErr_SetString(PyExc_ValueError, "port out of range");
        return NULL;
    }
    struct sockaddr_in v4;
    memset(&v4, 0, sizeof v4);
    if (inet_pton(AF_INET, host, &v4.sin_addr) == 1) {
        v4.sin_family = AF_INET;
        v4.sin_port = htons((uint16_t)port);
        return PyBytes_FromStringAndSize((const char *)&v4, sizeof v4);
    }
    struct sockaddr_in6 v6;
    memset(&v6, 0, sizeof v6);
    if (inet_pton(AF_INET6, host, &v6.sin6_addr) == 1) {
        v6.sin6_family = AF_INET6;
        v6.sin6_port = htons((uint16_t)port);
        return PyBytes_FromStringAndSize((const char *)&v6, sizeof v6);
    }
    PyErr_Format(PyExc_ValueError, "not a numeric address: %s", host);
    return NULL;
}

static int note_failed(PyObject *failed, Py_ssize_t index) {
    PyObject *i = PyLong_FromSsize_t(index);
    if (i == NULL)
        return -1;
    int r = PyList_Append(failed, i);
    Py_DECREF(i);
    return r;
}

PyDoc_STRVAR(protect_send_doc,
"protect_send(fd, protect, items) -> (sent, failed, leftovers)\n\n"
"items: a list of (packet, session, sockaddr): an RTP packet (bytes-like), the address of its libsrtp session\n"
"(srtp_t) and a socket address from sockaddr(). Each packet is SRTP-protected with the function at address\n"
"`protect` (libsrtp's srtp_protect) and the batch is sent with sendmmsg on socket `fd`.\n"
"sent: how many datagrams the kernel took; failed: the indices of the items dropped (protect refused them, or\n"
"the kernel refused their address); leftovers: [(index, datagram), ...] protected but not sent because the\n"
"socket's buffer was full, in order, for the caller to queue (protecting them again would be a replay).");

static PyObject *py_protect_send(PyObject *self, PyObject *args) {
    int fd;
    unsigned long long protect_addr;
    PyObject *items;
    if (!PyArg_ParseTuple(args, "iKO!", &fd, &protect_addr, &PyList_Type, &items))
        return NULL;
    srtp_protect_fn protect = (srtp_protect_fn)(uintptr_t)protect_addr;
    Py_ssize_t n = PyList_GET_SIZE(items);
    if (n > BATCH_MAX) {
        PyErr_Format(PyExc_ValueError, "at most %d packets per batch", BATCH_MAX);
        return NULL;
    }
    int count = 0;
    PyObject *failed = PyList_New(0);
    if (failed == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyList_GET_ITEM(items, i);
        PyObject *packet, *session, *addr;
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 3) {
            PyErr_SetString(PyExc_TypeError, "items are (packet, session, sockaddr) tuples");
            goto error;
        }
        packet = PyTuple_GET_ITEM(item, 0);
        session = PyTuple_GET_ITEM(item, 1);
        addr = PyTuple_GET_ITEM(item, 2);
        Py_buffer view;
        if (PyObject_GetBuffer(packet, &view, PyBUF_SIMPLE) < 0)
            goto error;
        void *ctx = PyLong_AsVoidPtr(session);
        if (ctx == NULL && PyErr_Occurred()) {
            PyBuffer_Release(&view);
            goto error;
        }
        char *sa;
        Py_ssize_t sa_len;
        if (PyBytes_AsStringAndSize(addr, &sa, &sa_len) < 0) {
            PyBuffer_Release(&view);
            goto error;
        }
        if (view.len < 12 || view.len > SLOT_BYTES - SRTP_MAX_TRAILER || ctx == NULL ||
            sa_len <= 0 || (size_t)sa_len > sizeof(struct sockaddr_storage)) {
            PyBuffer_Release(&view);
            if (note_failed(failed, i) < 0)
                goto error;
            continue;
        }
        memcpy(arena[count], view.buf, (size_t)view.len);
        int len = (int)view.len;
        PyBuffer_Release(&view);
        if (protect(ctx, arena[count], &len) != 0) {
            if (note_failed(failed, i) < 0)
                goto error;
            continue;
        }
        memcpy(&addrs[count], sa, (size_t)sa_len);
        iovs[count].iov_base = arena[count];
        iovs[count].iov_len = (size_t)len;
        memset(&msgs[count].msg_hdr, 0, sizeof msgs[count].msg_hdr);
        msgs[count].msg_hdr.msg_name = &addrs[count];
        msgs[count].msg_hdr.msg_namelen = (socklen_t)sa_len;
        msgs[count].msg_hdr.msg_iov = &iovs[count];
        msgs[count].msg_hdr.msg_iovlen = 1;
        slot_of[count] = (int)i;
        count++;
    }
    int sent = 0, next = 0, full = 0;
    int refused[BATCH_MAX];
    int n_refused = 0;
    /* the GIL stays held: the arena is shared, and a non-blocking sendmmsg does not wait */
    while (next < count) {
        int r = sendmmsg(fd, &msgs[next], (unsigned)(count - next), MSG_DONTWAIT);
        if (r > 0) {
            sent += r;
            next += r;
            continue;
        }
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS)) {
            full = 1;
            break;
        }
        /* this message's address was refused (unreachable, say): drop it and go on with the rest */
        refused[n_refused++] = slot_of[next];
        next++;
    }
    for (int i = 0; i < n_refused; i++)
        if (note_failed(failed, refused[i]) < 0)
            goto error;
    PyObject *leftovers = PyList_New(0);
    if (leftovers == NULL)
        goto error;
    if (full) {
        for (int i = next; i < count; i++) {
            PyObject *pair = Py_BuildValue("(iy#)", slot_of[i], (const char *)iovs[i].iov_base,
                                           (Py_ssize_t)iovs[i].iov_len);
            if (pair == NULL || PyList_Append(leftovers, pair) < 0) {
                Py_XDECREF(pair);
                Py_DECREF(leftovers);
                goto error;
            }
            Py_DECREF(pair);
        }
    }
    return Py_BuildValue("(iNN)", sent, failed, leftovers);
error:
    Py_DECREF(failed);
    return NULL;
}

static PyMethodDef methods[] = {
    {"sockaddr", py_sockaddr, METH_VARARGS, sockaddr_doc},
    {"protect_send", py_protect_send, METH_VARARGS, protect_send_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_forward", "The forwarding kernel's native half.", -1, methods,
};

PyMODINIT_FUNC PyInit__forward(void) {
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddIntConstant(m, "BATCH_MAX", BATCH_MAX) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
