/* The fault proxy's byte searches at each request and answer, compiled (issue 18): `request_start`,
 * `traceparent`, `glance`, `answer_tokens` and `plain_head` of `bascule/targets/local/proxy/scan.py`,
 * which holds their pure-Python twins and says what each returns. Each reads the first bytes of one
 * request or answer and keeps no state. The twins
 * are the reference: tests/test_scan.py holds these to them on generated answers.
 *
 * Built at install when a C compiler is found (hatch_build.py); bascule runs the same without it,
 * on the twins, only slower. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

static int
lower(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? c + ('a' - 'A') : c;
}

/* Whether `p[0:n]` begins with the lower-case ASCII `word`, ignoring the case of `p`. */
static int
begins_nocase(const unsigned char *p, Py_ssize_t n, const char *word, Py_ssize_t len)
{
    if (n < len)
        return 0;
    for (Py_ssize_t i = 0; i < len; i++) {
        if (lower(p[i]) != (unsigned char)word[i])
            return 0;
    }
    return 1;
}

static int
is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

/* The index of the first "\r\n\r\n" in `p[0:n]`, or -1. */
static Py_ssize_t
head_end(const unsigned char *p, Py_ssize_t n)
{
    const unsigned char *at = p;
    const unsigned char *stop = p + n;
    while (at + 4 <= stop) {
        const unsigned char *cr = memchr(at, '\r', (size_t)(stop - at - 3));
        if (cr == NULL)
            return -1;
        if (cr[1] == '\n' && cr[2] == '\r' && cr[3] == '\n')
            return cr - p;
        at = cr + 1;
    }
    return -1;
}

/* Whether `p[0:n]` begins with a final status line: "HTTP/1.0 " or "HTTP/1.1 ", a status of 200 to
   999, then " " or "\r" (`scan.FINAL_STATUS_LINES`). */
static int
final_status(const unsigned char *p, Py_ssize_t n)
{
    return n >= 13 && memcmp(p, "HTTP/1.", 7) == 0 && (p[7] == '0' || p[7] == '1') && p[8] == ' '
           && p[9] >= '2' && p[9] <= '9' && is_digit(p[10]) && is_digit(p[11])
           && (p[12] == ' ' || p[12] == '\r');
}

/* See scan.glance. */
static PyObject *
scan_glance(PyObject *Py_UNUSED(module), PyObject *arg)
{
    if (!PyBytes_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "glance() takes bytes");
        return NULL;
    }
    const unsigned char *p = (const unsigned char *)PyBytes_AS_STRING(arg);
    Py_ssize_t n = PyBytes_GET_SIZE(arg);
    if (!final_status(p, n))
        return PyLong_FromLong(-1);
    int status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
    if (status == 204 || status == 304) /* bodiless, whatever their head says */
        return PyLong_FromLong(-1);
    Py_ssize_t blank = head_end(p, n);
    if (blank < 0)
        return PyLong_FromLong(-1);
    Py_ssize_t end = blank + 2; /* the head, its last line's CRLF included */
    Py_ssize_t body = n - end - 2;
    /* Each header line (after a CRLF within the head): a Content-Length of digits only (spaces and
       tabs around them), or a Transfer-Encoding. Exactly one of them, the Content-Length, and a
       body of exactly its length. */
    int found = 0;
    Py_ssize_t length = -1;
    for (Py_ssize_t i = 0; i + 1 < end; i++) {
        if (p[i] != '\r' || p[i + 1] != '\n')
            continue;
        const unsigned char *line = p + i + 2;
        Py_ssize_t left = end - (i + 2);
        if (begins_nocase(line, left, "content-length", 14)) {
            Py_ssize_t j = 14;
            while (j < left && (line[j] == ' ' || line[j] == '\t'))
                j++;
            if (j >= left || line[j] != ':')
                continue;
            j++;
            while (j < left && (line[j] == ' ' || line[j] == '\t'))
                j++;
            if (j >= left || !is_digit(line[j]))
                continue;
            Py_ssize_t value = 0;
            int overflow = 0;
            while (j < left && is_digit(line[j])) {
                if (value > (PY_SSIZE_T_MAX - 9) / 10)
                    overflow = 1;
                else
                    value = value * 10 + (line[j] - '0');
                j++;
            }
            while (j < left && (line[j] == ' ' || line[j] == '\t'))
                j++;
            if (j >= left || line[j] != '\r')
                continue;
            found++;
            length = overflow ? -1 : value;
        }
        else if (begins_nocase(line, left, "transfer-encoding", 17)) {
            found++;
            length = -1;
        }
    }
    if (found != 1 || length < 0 || length != body)
        return PyLong_FromLong(-1);
    return PyLong_FromSsize_t(end);
}

/* See scan.plain_head. */
static PyObject *
scan_plain_head(PyObject *Py_UNUSED(module), PyObject *arg)
{
    if (!PyBytes_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "plain_head() takes bytes");
        return NULL;
    }
    const unsigned char *p = (const unsigned char *)PyBytes_AS_STRING(arg);
    Py_ssize_t n = PyBytes_GET_SIZE(arg);
    if (!final_status(p, n))
        Py_RETURN_FALSE;
    Py_ssize_t end = head_end(p, n);
    if (end <= 0)
        Py_RETURN_FALSE;
    for (Py_ssize_t i = 0; i + 12 <= end; i++) {
        if (lower(p[i]) == 'e' && begins_nocase(p + i, end - i, "event-stream", 12))
            Py_RETURN_FALSE;
    }
    Py_RETURN_TRUE;
}

static int
is_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/* See scan.answer_tokens. */
static PyObject *
scan_answer_tokens(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !PyBytes_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "answer_tokens() takes bytes and an int");
        return NULL;
    }
    const unsigned char *p = (const unsigned char *)PyBytes_AS_STRING(args[0]);
    Py_ssize_t n = PyBytes_GET_SIZE(args[0]);
    Py_ssize_t end = PyLong_AsSsize_t(args[1]);
    if (end == -1 && PyErr_Occurred())
        return NULL;
    if (end < 2 || end + 2 > n) {
        PyErr_SetString(PyExc_ValueError, "answer_tokens(): no head of that length");
        return NULL;
    }
    static const char rate[] = "\r\nx-ratelimit-";
    for (Py_ssize_t i = 0; i + 14 <= end; i++) {
        if (p[i] == '\r' && begins_nocase(p + i, end - i, rate, 14))
            return PyLong_FromLong(-1);
    }
    if (n < 10 || p[9] != '2')
        return PyLong_FromLong(0);
    /* The last `"total_tokens"` key with a number in the body, else a token a 4 bytes. */
    static const char key[] = "\"total_tokens\"";
    const unsigned char *digits = NULL;
    Py_ssize_t count = 0;
    for (Py_ssize_t i = n - 14; i >= end + 2; i--) {
        if (p[i] != '"' || memcmp(p + i, key, 14) != 0)
            continue;
        Py_ssize_t j = i + 14;
        while (j < n && is_space(p[j]))
            j++;
        if (j >= n || p[j] != ':')
            continue;
        j++;
        while (j < n && is_space(p[j]))
            j++;
        Py_ssize_t k = j;
        while (k < n && is_digit(p[k]))
            k++;
        if (k == j)
            continue;
        digits = p + j;
        count = k - j;
        break;
    }
    if (digits == NULL) {
        Py_ssize_t body = n - end - 2;
        return PyLong_FromSsize_t(body / 4 + (body % 4 != 0));
    }
    if (count <= 18) {
        long long value = 0;
        for (Py_ssize_t i = 0; i < count; i++)
            value = value * 10 + (digits[i] - '0');
        return PyLong_FromLongLong(value);
    }
    PyObject *text = PyBytes_FromStringAndSize((const char *)digits, count);
    if (text == NULL)
        return NULL;
    PyObject *value = PyLong_FromString(PyBytes_AS_STRING(text), NULL, 10);
    Py_DECREF(text);
    return value;
}

/* See scan.request_start. */
static PyObject *
scan_request_start(PyObject *Py_UNUSED(module), PyObject *arg)
{
    if (!PyBytes_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "request_start() takes bytes");
        return NULL;
    }
    const unsigned char *p = (const unsigned char *)PyBytes_AS_STRING(arg);
    Py_ssize_t n = PyBytes_GET_SIZE(arg);
    Py_ssize_t i = 0;
    while (i < n && i < 16 && p[i] >= 'A' && p[i] <= 'Z') /* the method */
        i++;
    if (i == 0 || i >= n || p[i] != ' ')
        Py_RETURN_FALSE;
    Py_ssize_t j = ++i;
    while (j < n && !is_space(p[j])) /* the target */
        j++;
    if (j == i || j + 9 > n || memcmp(p + j, " HTTP/1.", 8) != 0 || (p[j + 8] != '0' && p[j + 8] != '1'))
        Py_RETURN_FALSE;
    j += 9;
    if (j < n && p[j] == '\r')
        j++;
    if (j < n && p[j] == '\n')
        Py_RETURN_TRUE;
    Py_RETURN_FALSE;
}

/* See scan.traceparent. */
static PyObject *
scan_traceparent(PyObject *Py_UNUSED(module), PyObject *arg)
{
    if (!PyBytes_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "traceparent() takes bytes");
        return NULL;
    }
    const unsigned char *p = (const unsigned char *)PyBytes_AS_STRING(arg);
    Py_ssize_t n = PyBytes_GET_SIZE(arg);
    Py_ssize_t blank = head_end(p, n);
    Py_ssize_t region = blank < 0 ? n : blank + 2; /* the head, or all of `data` if it is not whole */
    for (Py_ssize_t i = 0; i + 13 <= region; i++) {
        const unsigned char *cr = memchr(p + i, '\r', (size_t)(region - 12 - i));
        if (cr == NULL)
            break;
        i = cr - p;
        if (p[i + 1] != '\n' || !begins_nocase(p + i + 2, region - i - 2, "traceparent", 11))
            continue;
        Py_ssize_t j = i + 13;
        while (j < region && (p[j] == ' ' || p[j] == '\t'))
            j++;
        if (j >= region || p[j] != ':')
            continue;
        j++;
        while (j < region && (p[j] == ' ' || p[j] == '\t'))
            j++;
        Py_ssize_t k = j;
        while (k < region && p[k] != '\r' && p[k] != '\n')
            k++;
        return PyBytes_FromStringAndSize((const char *)p + j, k - j);
    }
    Py_RETURN_NONE;
}

static PyMethodDef scan_methods[] = {
    {"request_start", (PyCFunction)scan_request_start, METH_O,
     "See bascule.targets.local.proxy.scan.request_start."},
    {"traceparent", (PyCFunction)scan_traceparent, METH_O,
     "See bascule.targets.local.proxy.scan.traceparent."},
    {"glance", (PyCFunction)scan_glance, METH_O, "See bascule.targets.local.proxy.scan.glance."},
    {"plain_head", (PyCFunction)scan_plain_head, METH_O,
     "See bascule.targets.local.proxy.scan.plain_head."},
    {"answer_tokens", (PyCFunction)(void (*)(void))scan_answer_tokens, METH_FASTCALL,
     "See bascule.targets.local.proxy.scan.answer_tokens."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef scan_module = {
    PyModuleDef_HEAD_INIT, "_scan", "The fault proxy's byte searches, compiled.", 0,
    scan_methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__scan(void)
{
    return PyModuleDef_Init(&scan_module);
}
