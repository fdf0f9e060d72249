/* dagd._spawn: start a step in its own session and cgroup at vfork speed.
 *
 * spawn(path, argv, envp, cwd, stdin, stdout, stderr, procs) -> pid
 *
 * The child is made with vfork (it shares dagd's memory and runs until it execs, while dagd
 * waits), so nothing of dagd is copied. Before it execs it writes "0" to each fd in `procs`
 * (open cgroup.procs files), i.e. it joins the step's cgroups itself: everything the step will
 * ever start is born inside. Python's subprocess cannot run code in its vfork child; a `sh`
 * trampoline (dagd.cgroups.JOIN_SCRIPT) costs one exec more per step.
 *
 * The child only makes system calls (async-signal-safe): signal dispositions back to default
 * (Python ignores SIGPIPE and SIGXFSZ; handlers point into dagd), a new session, the three
 * standard fds, every other fd closed, the directory, the exec. What failed, and its errno,
 * are left in memory the parent reads after vfork returns; a failed child exits 127 and is
 * reaped here, and the call raises OSError like subprocess does.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

enum { FAIL_NONE, FAIL_CGROUP, FAIL_CHDIR, FAIL_EXEC, FAIL_FDS };

static void free_vector(char **v)
{
    if (v == NULL)
        return;
    for (char **p = v; *p != NULL; p++)
        PyMem_Free(*p);
    PyMem_Free(v);
}

/* A list of str/bytes as a NULL-terminated vector of C strings (file system encoding). */
static char **to_vector(PyObject *seq, const char *what)
{
    PyObject *fast = PySequence_Fast(seq, what);
    if (fast == NULL)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
    char **v = PyMem_Calloc((size_t)n + 1, sizeof(char *));
    if (v == NULL) {
        Py_DECREF(fast);
        PyErr_NoMemory();
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *bytes = NULL;
        if (!PyUnicode_FSConverter(PySequence_Fast_GET_ITEM(fast, i), &bytes)) {
            free_vector(v);
            Py_DECREF(fast);
            return NULL;
        }
        const char *s = PyBytes_AS_STRING(bytes);
        size_t len = (size_t)PyBytes_GET_SIZE(bytes);
        v[i] = PyMem_Malloc(len + 1);
        if (v[i] == NULL) {
            Py_DECREF(bytes);
            free_vector(v);
            Py_DECREF(fast);
            PyErr_NoMemory();
            return NULL;
        }
        memcpy(v[i], s, len + 1);
        Py_DECREF(bytes);
    }
    Py_DECREF(fast);
    return v;
}

static PyObject *spawn(PyObject *self, PyObject *args)
{
    PyObject *path_obj, *argv_obj, *envp_obj, *cwd_obj, *procs_obj;
    int fd_in, fd_out, fd_err;
    if (!PyArg_ParseTuple(args, "O&OOO&iiiO", PyUnicode_FSConverter, &path_obj, &argv_obj, &envp_obj,
                          PyUnicode_FSConverter, &cwd_obj, &fd_in, &fd_out, &fd_err, &procs_obj))
        return NULL;
    PyObject *result = NULL;
    char **argv = NULL, **envp = NULL;
    int *procs = NULL;
    Py_ssize_t nprocs = 0;
    PyObject *procs_fast = NULL;

    argv = to_vector(argv_obj, "argv must be a sequence");
    if (argv == NULL)
        goto done;
    envp = to_vector(envp_obj, "envp must be a sequence");
    if (envp == NULL)
        goto done;
    procs_fast = PySequence_Fast(procs_obj, "procs must be a sequence of fds");
    if (procs_fast == NULL)
        goto done;
    nprocs = PySequence_Fast_GET_SIZE(procs_fast);
    procs = PyMem_Calloc((size_t)nprocs + 1, sizeof(int));
    if (procs == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < nprocs; i++) {
        procs[i] = PyLong_AsLong(PySequence_Fast_GET_ITEM(procs_fast, i));
        if (procs[i] == -1 && PyErr_Occurred())
            goto done;
    }
    const char *path = PyBytes_AS_STRING(path_obj);
    const char *cwd = PyBytes_AS_STRING(cwd_obj);

    volatile int fail_stage = FAIL_NONE;
    volatile int fail_errno = 0;
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old); /* no handler of dagd may run in the child */
    pid_t pid = vfork();
    if (pid == 0) {
        struct sigaction dfl;
        memset(&dfl, 0, sizeof dfl);
        dfl.sa_handler = SIG_DFL;
        for (int sig = 1; sig < NSIG; sig++) {
            struct sigaction cur;
            if (sig == SIGKILL || sig == SIGSTOP)
                continue;
            if (sigaction(sig, NULL, &cur) == 0 && (cur.sa_handler != SIG_DFL || sig == SIGPIPE || sig == SIGXFSZ))
                sigaction(sig, &dfl, NULL);
        }
        for (Py_ssize_t i = 0; i < nprocs; i++) {
            if (write(procs[i], "0", 1) != 1) {
                fail_errno = errno;
                fail_stage = FAIL_CGROUP;
                _exit(127);
            }
        }
        setsid();
        if (dup2(fd_in, 0) < 0 || dup2(fd_out, 1) < 0 || dup2(fd_err, 2) < 0) {
            fail_errno = errno;
            fail_stage = FAIL_FDS;
            _exit(127);
        }
        if (syscall(SYS_close_range, 3, ~0U, 0) != 0) { /* kernels before 5.9: one by one */
            long max = sysconf(_SC_OPEN_MAX);
            for (long fd = 3; fd < (max > 0 ? max : 1024); fd++)
                close((int)fd);
        }
        if (chdir(cwd) != 0) {
            fail_errno = errno;
            fail_stage = FAIL_CHDIR;
            _exit(127);
        }
        sigprocmask(SIG_SETMASK, &old, NULL);
        execve(path, argv, envp);
        fail_errno = errno;
        fail_stage = FAIL_EXEC;
        _exit(127);
    }
    int vfork_errno = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (pid < 0) {
        errno = vfork_errno;
        PyErr_SetFromErrno(PyExc_OSError);
        goto done;
    }
    if (fail_stage != FAIL_NONE) {
        int status;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
            ;
        const char *name = fail_stage == FAIL_CHDIR ? cwd : fail_stage == FAIL_EXEC ? path : NULL;
        char what[160];
        snprintf(what, sizeof what, "%s%s", fail_stage == FAIL_CGROUP ? "cannot join the step's cgroup: "
                 : fail_stage == FAIL_FDS ? "cannot set the step's standard streams: " : "", strerror(fail_errno));
        PyObject *exc_args = name != NULL
            ? Py_BuildValue("(isN)", fail_errno, what, PyUnicode_DecodeFSDefault(name))
            : Py_BuildValue("(is)", fail_errno, what);
        if (exc_args != NULL) {
            PyObject *type = fail_errno == ENOENT ? PyExc_FileNotFoundError
                : (fail_errno == EACCES || fail_errno == EPERM) ? PyExc_PermissionError
                : PyExc_OSError;
            PyErr_SetObject(type, exc_args);
            Py_DECREF(exc_args);
        }
        goto done;
    }
    result = PyLong_FromLong(pid);
done:
    free_vector(argv);
    free_vector(envp);
    PyMem_Free(procs);
    Py_XDECREF(procs_fast);
    Py_DECREF(path_obj);
    Py_DECREF(cwd_obj);
    return result;
}

static PyMethodDef methods[] = {
    {"spawn", spawn, METH_VARARGS,
     "spawn(path, argv, envp, cwd, stdin, stdout, stderr, procs) -> pid: vfork, join the cgroups "
     "whose cgroup.procs fds are in procs, new session, exec."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_spawn", NULL, -1, methods};

PyMODINIT_FUNC PyInit__spawn(void) { return PyModule_Create(&module); }
