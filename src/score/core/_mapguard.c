/*
 * A clear last word instead of "Bus error" when a memory-mapped file cannot be read (SIGBUS).
 *
 * Why: the client hashes an upload's source through a read-only memory map, which saves copying every
 * byte out of the page cache twice (once per MD5). If another program truncates the file meanwhile, or
 * the disk fails to read a page, touching that page raises SIGBUS, and Python cannot turn a fault in C
 * code (hashlib, the MD5 lanes) into an exception: the process would die with a bare "Bus error".
 * exit_on_sigbus(message) installs a handler that writes the message to stderr and exits with status 1,
 * the client's status for a failed transfer. Nothing is lost: an upload is finalized only after both
 * MD5s are complete, and its journal stays for the next run, which reports that the file changed.
 * Only async-signal-safe calls (write, _exit) are made in the handler.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

static char message[4096];
static volatile sig_atomic_t message_length = 0;

static void on_sigbus(int signal_number) {
    (void)signal_number;
    size_t length = (size_t)message_length;
    const char *next = message;
    while (length > 0) {
        ssize_t written = write(2, next, length);
        if (written <= 0) break;
        next += written;
        length -= (size_t)written;
    }
    _exit(1);
}

static PyObject *exit_on_sigbus(PyObject *self, PyObject *text) {
    (void)self;
    Py_buffer given;
    if (PyObject_GetBuffer(text, &given, PyBUF_SIMPLE) < 0) return NULL;
    size_t length = (size_t)given.len < sizeof message ? (size_t)given.len : sizeof message;
    message_length = 0; /* a fault while the message is replaced exits without a half-written one */
    memcpy(message, given.buf, length);
    message_length = (sig_atomic_t)length;
    PyBuffer_Release(&given);
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = on_sigbus;
    sigemptyset(&action.sa_mask);
    if (sigaction(SIGBUS, &action, NULL) != 0) return PyErr_SetFromErrno(PyExc_OSError);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"exit_on_sigbus", exit_on_sigbus, METH_O,
     "exit_on_sigbus(message: bytes): on SIGBUS, write message to stderr and exit with status 1."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_mapguard", NULL, -1, methods};

PyMODINIT_FUNC PyInit__mapguard(void) { return PyModule_Create(&module); }
