/* Call a function of an isolated interpreter on the calling thread, directly.

   _interpreters.exec (all that Python 3.13 offers) makes a thread state for
   every call and frees it after: an mmap and munmap of its frame stack each
   time, ~10 us a call in a loop and ~46 us a 2048-row batch inside a DuckDB
   query (bench/results: "Dispatch overhead"). Here every (OS thread,
   interpreter) pair keeps its thread state, so a call is: switch GILs,
   rebuild the request as objects of the interpreter (memoryviews over the
   caller's buffers, no copy), call, switch back.

   Only the main side loads this module; the interpreters run the standard
   library and the package's pure-Python runtime, as before.

   Lifetimes:
   - A thread state belongs to one OS thread. Each OS thread has a token that
     a pthread key destructor marks dead when the thread exits (no Python is
     touched there); the next call on the interpreter deletes the thread
     states of dead threads. detach() deletes them all, so the interpreter
     can be destroyed (Py_EndInterpreter refuses while other thread states
     exist).
   - The interpreter's memoryviews point into the caller's buffers. After
     the call, if nothing in the interpreter still refers to one (its
     managed buffer is ours alone), the caller's buffer is released;
     otherwise (a UDF kept its input) the caller's buffer stays held until
     the interpreter lets go of it or is gone, so no view ever dangles.
   - A call never waits for a lock: two threads in one DirectCall at once is
     a caller bug and raises RuntimeError.

   Stopping a call (a runaway UDF): stop() runs on another thread. It takes
   the interpreter's GIL on a thread state of its own (the only way
   PyThreadState_SetAsyncExc reaches a thread state of that interpreter) and
   raises an exception of the interpreter's __main__ asynchronously in the
   calling thread, if the call it was asked to stop is still the one running.
   Both sides read and write the call's number and the sent flag holding the
   interpreter's GIL, so an exception meant for one call never lands in the
   next: one sent too late for its call is cleared by the call itself.
*/
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* Exported by CPython 3.13 and 3.14 (the _interpreters module uses it);
   it takes the runtime's interpreter-list lock, unlike walking
   PyInterpreterState_Head() ourselves. */
extern PyInterpreterState *_PyInterpreterState_LookUpID(int64_t);

/* SIGINTs noted so far (see "Ctrl-C" below); a call keeps the count it started with. */
static atomic_ulong sigint_generation;

/* ---- OS thread tokens -------------------------------------------------- */

typedef struct {
    atomic_int alive;
    atomic_long refs; /* the thread itself, plus each thread state record */
} ThreadToken;

static pthread_key_t token_key;

/* Tokens use the C allocator, not PyMem_Raw*: the last release may come
   from a thread exiting after Python has finalized, where a raw-domain hook
   (tracemalloc's) must not run. */
static void
token_release(ThreadToken *token)
{
    if (atomic_fetch_sub(&token->refs, 1) == 1) {
        free(token);
    }
}

static void
token_thread_exit(void *token)
{
    atomic_store(&((ThreadToken *)token)->alive, 0);
    token_release(token);
}

static ThreadToken *
token_of_this_thread(void)
{
    ThreadToken *token = pthread_getspecific(token_key);
    if (token == NULL) {
        token = malloc(sizeof(ThreadToken));
        if (token == NULL) {
            return NULL;
        }
        atomic_init(&token->alive, 1);
        atomic_init(&token->refs, 1);
        if (pthread_setspecific(token_key, token) != 0) {
            free(token);
            return NULL;
        }
    }
    return token;
}

/* ---- values that cross: a flat tree of plain C data -------------------- */

enum { V_NONE, V_FALSE, V_TRUE, V_INT, V_STR, V_TUPLE, V_VIEW };

typedef struct {
    int kind;
    long long number;  /* V_INT */
    char *text;        /* V_STR: UTF-8, raw-malloc'd */
    Py_ssize_t size;   /* V_STR bytes, V_TUPLE items */
    int buffer;        /* V_VIEW: index into the caller's Py_buffers */
} Value;

typedef struct {
    Value *values;
    Py_ssize_t count, capacity;
    Py_buffer *buffers; /* V_VIEW: held from flatten until the interpreter lets go */
    PyObject **managed; /* V_VIEW: the interpreter's managed buffer of each view */
    Py_ssize_t buffer_count, buffer_capacity;
} Tree;

static void
tree_clear_values(Tree *tree)
{
    for (Py_ssize_t i = 0; i < tree->count; i++) {
        if (tree->values[i].kind == V_STR) {
            PyMem_RawFree(tree->values[i].text);
        }
    }
    tree->count = 0;
}

static void
tree_free(Tree *tree)
{
    tree_clear_values(tree);
    PyMem_RawFree(tree->values);
    PyMem_RawFree(tree->buffers);
    PyMem_RawFree(tree->managed);
    memset(tree, 0, sizeof(*tree));
}

static Value *
tree_push(Tree *tree, int kind)
{
    if (tree->count == tree->capacity) {
        Py_ssize_t capacity = tree->capacity ? tree->capacity * 2 : 64;
        Value *values = PyMem_RawRealloc(tree->values, capacity * sizeof(Value));
        if (values == NULL) {
            PyErr_NoMemory();
            return NULL;
        }
        tree->values = values;
        tree->capacity = capacity;
    }
    Value *value = &tree->values[tree->count++];
    memset(value, 0, sizeof(*value));
    value->kind = kind;
    return value;
}

static int
tree_push_buffer(Tree *tree, PyObject *view)
{
    if (tree->buffer_count == tree->buffer_capacity) {
        Py_ssize_t capacity = tree->buffer_capacity ? tree->buffer_capacity * 2 : 16;
        Py_buffer *buffers = PyMem_RawRealloc(tree->buffers, capacity * sizeof(Py_buffer));
        if (buffers == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        tree->buffers = buffers;
        PyObject **managed = PyMem_RawRealloc(tree->managed, capacity * sizeof(PyObject *));
        if (managed == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        tree->managed = managed;
        tree->buffer_capacity = capacity;
    }
    /* C-contiguous, format kept: the interpreter casts back to it. */
    if (PyObject_GetBuffer(view, &tree->buffers[tree->buffer_count], PyBUF_FORMAT | PyBUF_C_CONTIGUOUS) < 0) {
        return -1;
    }
    tree->managed[tree->buffer_count] = NULL;
    return (int)tree->buffer_count++;
}

/* Turn an object tree into plain C data, in the interpreter that owns it.
   Memoryviews are allowed only when views_allowed (caller -> interpreter). */
static int
flatten(Tree *tree, PyObject *object, int views_allowed)
{
    if (object == Py_None) {
        return tree_push(tree, V_NONE) ? 0 : -1;
    }
    if (PyBool_Check(object)) {
        return tree_push(tree, object == Py_True ? V_TRUE : V_FALSE) ? 0 : -1;
    }
    if (PyLong_CheckExact(object)) {
        long long number = PyLong_AsLongLong(object);
        if (number == -1 && PyErr_Occurred()) {
            return -1;
        }
        Value *value = tree_push(tree, V_INT);
        if (value == NULL) {
            return -1;
        }
        value->number = number;
        return 0;
    }
    if (PyUnicode_CheckExact(object)) {
        Py_ssize_t size;
        const char *text = PyUnicode_AsUTF8AndSize(object, &size);
        if (text == NULL) {
            return -1;
        }
        Value *value = tree_push(tree, V_STR);
        if (value == NULL) {
            return -1;
        }
        value->text = PyMem_RawMalloc(size + 1);
        if (value->text == NULL) {
            value->kind = V_NONE;
            PyErr_NoMemory();
            return -1;
        }
        memcpy(value->text, text, size + 1);
        value->size = size;
        return 0;
    }
    if (PyTuple_CheckExact(object)) {
        Py_ssize_t size = PyTuple_GET_SIZE(object);
        Value *value = tree_push(tree, V_TUPLE);
        if (value == NULL) {
            return -1;
        }
        value->size = size;
        for (Py_ssize_t i = 0; i < size; i++) {
            if (flatten(tree, PyTuple_GET_ITEM(object, i), views_allowed) < 0) {
                return -1;
            }
        }
        return 0;
    }
    if (views_allowed && PyMemoryView_Check(object)) {
        Value *value = tree_push(tree, V_VIEW);
        if (value == NULL) {
            return -1;
        }
        value->kind = V_NONE; /* until the buffer is held */
        int index = tree_push_buffer(tree, object);
        if (index < 0) {
            return -1;
        }
        value->kind = V_VIEW;
        value->buffer = index;
        return 0;
    }
    PyErr_Format(PyExc_TypeError, "cannot pass a %.100s between interpreters", Py_TYPE(object)->tp_name);
    return -1;
}

/* Rebuild, in the current interpreter, the object at tree->values[*next]. */
static PyObject *
build(Tree *tree, Py_ssize_t *next)
{
    Value *value = &tree->values[(*next)++];
    switch (value->kind) {
    case V_NONE:
        Py_RETURN_NONE;
    case V_FALSE:
        Py_RETURN_FALSE;
    case V_TRUE:
        Py_RETURN_TRUE;
    case V_INT:
        return PyLong_FromLongLong(value->number);
    case V_STR:
        return PyUnicode_DecodeUTF8(value->text, value->size, "strict");
    case V_TUPLE: {
        PyObject *tuple = PyTuple_New(value->size);
        if (tuple == NULL) {
            return NULL;
        }
        for (Py_ssize_t i = 0; i < value->size; i++) {
            PyObject *item = build(tree, next);
            if (item == NULL) {
                Py_DECREF(tuple);
                return NULL;
            }
            PyTuple_SET_ITEM(tuple, i, item);
        }
        return tuple;
    }
    case V_VIEW: {
        Py_buffer *buffer = &tree->buffers[value->buffer];
        PyObject *view = PyMemoryView_FromMemory(buffer->buf, buffer->len, buffer->readonly ? PyBUF_READ : PyBUF_WRITE);
        if (view == NULL) {
            return NULL;
        }
        PyObject *managed = (PyObject *)((PyMemoryViewObject *)view)->mbuf;
        Py_INCREF(managed);
        tree->managed[value->buffer] = managed;
        /* Bytes, signed ("b": pyarrow's buffers) or not, arrive as "B": the
           codec reads every buffer as bytes, and a cast costs ~0.3 us. */
        if (buffer->format == NULL || strcmp(buffer->format, "B") == 0 || strcmp(buffer->format, "b") == 0) {
            return view;
        }
        PyObject *cast = PyObject_CallMethod(view, "cast", "s", buffer->format);
        Py_DECREF(view);
        return cast;
    }
    }
    PyErr_SetString(PyExc_SystemError, "corrupt value tree");
    return NULL;
}

/* ---- the DirectCall object --------------------------------------------- */

typedef struct Record {
    ThreadToken *token;
    PyThreadState *tstate;
    struct Record *next;
} Record;

/* A caller's buffer that the interpreter still refers to after a call. */
typedef struct Held {
    PyObject *managed; /* the interpreter's managed buffer over it */
    Py_buffer buffer;  /* the caller's */
    struct Held *next;
} Held;

#define MAX_TARGETS 8

typedef struct {
    PyObject_HEAD
    int64_t interpreter_id;
    PyInterpreterState *interp; /* NULL once detached */
    PyThread_type_lock busy;
    /* Held by stop() and raise_in_threads() while attached to the
       interpreter, and by detach(): the interpreter outlives them. */
    PyThread_type_lock attaching;
    unsigned long long calls;            /* calls started so far */
    atomic_ullong running;               /* the number of the call inside the interpreter, or 0 */
    atomic_ulong running_generation;     /* sigint_generation when it started */
    unsigned long running_thread;        /* the OS thread making it */
    int stop_sent;                       /* an exception may be pending for it (interpreter's GIL) */
    Record *records;
    Held *held;
    char *target_names[MAX_TARGETS];
    PyObject *targets[MAX_TARGETS]; /* the interpreter's objects */
} DirectCall;

/* In the interpreter, on a thread state of its own: delete `record`'s. */
static void
record_delete(Record *record)
{
    PyThreadState_Clear(record->tstate);
    PyThreadState_Delete(record->tstate);
    token_release(record->token);
    PyMem_RawFree(record);
}

/* In the interpreter: delete the thread states of threads that exited. */
static void
sweep_dead_threads(DirectCall *self)
{
    Record **link = &self->records;
    while (*link != NULL) {
        Record *record = *link;
        if (atomic_load(&record->token->alive)) {
            link = &record->next;
            continue;
        }
        *link = record->next;
        record_delete(record);
    }
}

/* In the interpreter: drop held buffers it no longer uses; they move to
   *released, to be released by the caller's side after switching back. */
static void
sweep_held(DirectCall *self, Held **released)
{
    Held **link = &self->held;
    while (*link != NULL) {
        Held *held = *link;
        if (Py_REFCNT(held->managed) > 1) {
            link = &held->next;
            continue;
        }
        *link = held->next;
        Py_CLEAR(held->managed);
        held->next = *released;
        *released = held;
    }
}

static void
release_held(Held *held)
{
    while (held != NULL) {
        Held *next = held->next;
        PyBuffer_Release(&held->buffer);
        PyMem_RawFree(held);
        held = next;
    }
}

static PyThreadState *
thread_state_for(DirectCall *self)
{
    ThreadToken *token = token_of_this_thread();
    if (token == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    for (Record *record = self->records; record != NULL; record = record->next) {
        if (record->token == token) {
            return record->tstate;
        }
    }
    Record *record = PyMem_RawMalloc(sizeof(Record));
    if (record == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    record->tstate = PyThreadState_New(self->interp);
    if (record->tstate == NULL) {
        PyMem_RawFree(record);
        PyErr_SetString(PyExc_RuntimeError, "could not make a thread state in the interpreter");
        return NULL;
    }
    atomic_fetch_add(&token->refs, 1);
    record->token = token;
    record->next = self->records;
    self->records = record;
    return record->tstate;
}

/* In the interpreter: the cached function `name` of its __main__. */
static PyObject *
target_of(DirectCall *self, const char *name)
{
    int free_slot = -1;
    for (int i = 0; i < MAX_TARGETS; i++) {
        if (self->target_names[i] == NULL) {
            if (free_slot < 0) {
                free_slot = i;
            }
        }
        else if (strcmp(self->target_names[i], name) == 0) {
            return self->targets[i];
        }
    }
    PyObject *main_module = PyImport_AddModule("__main__"); /* borrowed */
    if (main_module == NULL) {
        return NULL;
    }
    PyObject *target = PyObject_GetAttrString(main_module, name);
    if (target == NULL || free_slot < 0) {
        Py_XDECREF(target);
        if (target != NULL) {
            PyErr_SetString(PyExc_RuntimeError, "too many distinct functions called through one DirectCall");
        }
        return NULL;
    }
    size_t size = strlen(name) + 1;
    self->target_names[free_slot] = PyMem_RawMalloc(size);
    if (self->target_names[free_slot] == NULL) {
        Py_DECREF(target);
        PyErr_NoMemory();
        return NULL;
    }
    memcpy(self->target_names[free_slot], name, size);
    self->targets[free_slot] = target;
    return target;
}

/* In the interpreter: the pending exception as (type name, message, message). */
static int
flatten_exception(Tree *out)
{
    PyObject *error = PyErr_GetRaisedException();
    PyObject *message = error ? PyObject_Str(error) : NULL;
    PyErr_Clear();
    PyObject *name = PyUnicode_FromString(error ? Py_TYPE(error)->tp_name : "SystemError");
    PyObject *text = message ? message : PyUnicode_FromString("(the error could not be shown)");
    /* The traceback as Python prints it, or the message where that fails. */
    PyObject *display = NULL;
    PyObject *traceback = error ? PyImport_ImportModule("traceback") : NULL;
    PyObject *lines = traceback ? PyObject_CallMethod(traceback, "format_exception", "O", error) : NULL;
    PyObject *empty = lines ? PyUnicode_FromString("") : NULL;
    display = empty ? PyUnicode_Join(empty, lines) : NULL;
    PyErr_Clear();
    PyObject *triple = (name && text) ? PyTuple_Pack(3, name, text, display ? display : text) : NULL;
    int result = triple ? flatten(out, triple, 0) : -1;
    PyErr_Clear();
    Py_XDECREF(triple);
    Py_XDECREF(display);
    Py_XDECREF(empty);
    Py_XDECREF(lines);
    Py_XDECREF(traceback);
    Py_XDECREF(name);
    Py_XDECREF(text);
    Py_XDECREF(error);
    return result;
}

PyDoc_STRVAR(call_doc,
"call(name, request)\n--\n\n"
"Call function `name` of the interpreter's __main__ with `request` rebuilt there; return what it returns.\n\n"
"`request` holds None, bool, int, str, tuple and memoryview (shared, not copied; byte\n"
"views arrive as format 'B', others keep their format);\n"
"the result may hold the same but memoryview. An exception in the interpreter comes back\n"
"as the tuple (type name, message, traceback text).");

static PyObject *
DirectCall_call(DirectCall *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !PyUnicode_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "call(name: str, request)");
        return NULL;
    }
    const char *name = PyUnicode_AsUTF8(args[0]);
    if (name == NULL) {
        return NULL;
    }
    if (!PyThread_acquire_lock(self->busy, NOWAIT_LOCK)) {
        PyErr_SetString(PyExc_RuntimeError, "this interpreter is already running a call on another thread");
        return NULL;
    }
    Tree request = {0}, reply = {0};
    Held *released = NULL;
    PyObject *result = NULL;
    if (self->interp == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "the interpreter was detached");
        goto done;
    }
    if (flatten(&request, args[1], 1) < 0) {
        goto done;
    }
    PyThreadState *tstate = thread_state_for(self);
    if (tstate == NULL) {
        goto done;
    }

    /* Releases the caller's GIL, takes the interpreter's. */
    PyThreadState *caller = PyThreadState_Swap(tstate);
    {
        sweep_dead_threads(self);
        sweep_held(self, &released);
        PyObject *target = target_of(self, name);
        Py_ssize_t next = 0;
        PyObject *argument = target ? build(&request, &next) : NULL;
        PyObject *value = NULL;
        if (argument != NULL) {
            /* Release stores (plain moves on x86): stop() orders against
               these through the interpreter's GIL; the watchdog reading
               `running` needs only to see them soon. Sequentially consistent
               stores cost a locked instruction each, on every call; reading
               the clock here cost 73 ns a call on the 2-core dev VM, so the
               watchdog times calls itself and a call keeps the SIGINT count
               instead, to tell whether Ctrl-C came after it started. */
            self->running_thread = PyThread_get_thread_ident();
            atomic_store_explicit(&self->running_generation,
                                  atomic_load_explicit(&sigint_generation, memory_order_relaxed),
                                  memory_order_relaxed);
            atomic_store_explicit(&self->running, ++self->calls, memory_order_release);
            value = PyObject_CallOneArg(target, argument);
            atomic_store_explicit(&self->running, 0, memory_order_release);
            if (self->stop_sent) {
                /* Sent after the function's last bytecode: not for the next call. */
                self->stop_sent = 0;
                PyThreadState_SetAsyncExc(self->running_thread, NULL);
            }
        }
        if (value == NULL || flatten(&reply, value, 0) < 0) {
            tree_clear_values(&reply);
            flatten_exception(&reply);
        }
        Py_XDECREF(value);
        Py_XDECREF(argument);
        /* Views still referred to keep the caller's buffer held. */
        for (Py_ssize_t i = 0; i < request.buffer_count; i++) {
            PyObject *managed = request.managed[i];
            if (managed == NULL) {
                continue;
            }
            request.managed[i] = NULL;
            if (Py_REFCNT(managed) == 1) {
                Py_DECREF(managed);
                continue;
            }
            Held *held = PyMem_RawMalloc(sizeof(Held));
            if (held == NULL) {
                /* Cannot track it: leak the caller's buffer rather than let a view dangle. */
                request.buffers[i].obj = NULL;
                continue;
            }
            held->managed = managed;
            held->buffer = request.buffers[i];
            held->next = self->held;
            self->held = held;
            request.buffers[i].obj = NULL; /* now owned by `held` */
        }
    }
    PyThreadState_Swap(caller);

    if (reply.count == 0) {
        PyErr_SetString(PyExc_MemoryError, "no memory for the interpreter's reply");
    }
    else {
        Py_ssize_t next = 0;
        result = build(&reply, &next);
    }

done:
    for (Py_ssize_t i = 0; i < request.buffer_count; i++) {
        if (request.buffers[i].obj != NULL) {
            PyBuffer_Release(&request.buffers[i]);
        }
    }
    release_held(released);
    tree_free(&request);
    tree_free(&reply);
    PyThread_release_lock(self->busy);
    return result;
}

/* detach(), holding self->attaching. */
static int
detach_locked(DirectCall *self)
{
    Held *released = NULL;
    PyThreadState *own = PyThreadState_New(self->interp);
    if (own == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "could not make a thread state in the interpreter");
        return -1;
    }
    PyThreadState *caller = PyThreadState_Swap(own);
    while (self->records != NULL) {
        Record *record = self->records;
        self->records = record->next;
        record_delete(record);
    }
    for (int i = 0; i < MAX_TARGETS; i++) {
        Py_CLEAR(self->targets[i]);
        PyMem_RawFree(self->target_names[i]);
        self->target_names[i] = NULL;
    }
    sweep_held(self, &released);
    /* Views the interpreter still holds die with it: keep their buffers
       (self->held) until this object goes, after the interpreter. */
    for (Held *held = self->held; held != NULL; held = held->next) {
        Py_CLEAR(held->managed);
    }
    PyThreadState_Clear(own);
    PyThreadState_Swap(caller);
    PyThreadState_Delete(own);
    release_held(released);
    self->interp = NULL;
    return 0;
}

/* Delete every thread state and object of ours in the interpreter. */
static int
detach(DirectCall *self)
{
    if (self->interp == NULL) {
        return 0;
    }
    /* stop() may be attached to the interpreter right now: wait for it
       (without the caller's GIL, which it may need to switch back). */
    if (!PyThread_acquire_lock(self->attaching, NOWAIT_LOCK)) {
        Py_BEGIN_ALLOW_THREADS
        PyThread_acquire_lock(self->attaching, WAIT_LOCK);
        Py_END_ALLOW_THREADS
    }
    int status = detach_locked(self);
    PyThread_release_lock(self->attaching);
    return status;
}


PyDoc_STRVAR(detach_doc,
"detach()\n--\n\n"
"Delete this object's thread states and references in the interpreter, so it can be destroyed.");

static PyObject *
DirectCall_detach(DirectCall *self, PyObject *Py_UNUSED(ignored))
{
    if (!PyThread_acquire_lock(self->busy, NOWAIT_LOCK)) {
        PyErr_SetString(PyExc_RuntimeError, "this interpreter is running a call on another thread");
        return NULL;
    }
    int status = detach(self);
    PyThread_release_lock(self->busy);
    if (status < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* Switch this thread to a fresh thread state of the interpreter (waiting
   for its GIL), holding self->attaching; NULL if detached or on failure
   (with an exception set on failure). */
static PyThreadState *
attach_fresh(DirectCall *self, PyThreadState **caller)
{
    Py_BEGIN_ALLOW_THREADS
    PyThread_acquire_lock(self->attaching, WAIT_LOCK);
    Py_END_ALLOW_THREADS
    if (self->interp == NULL) {
        PyThread_release_lock(self->attaching);
        return NULL;
    }
    PyThreadState *own = PyThreadState_New(self->interp);
    if (own == NULL) {
        PyThread_release_lock(self->attaching);
        PyErr_SetString(PyExc_RuntimeError, "could not make a thread state in the interpreter");
        return NULL;
    }
    *caller = PyThreadState_Swap(own);
    return own;
}

static void
leave_fresh(DirectCall *self, PyThreadState *own, PyThreadState *caller)
{
    PyErr_Clear();
    PyThreadState_Clear(own);
    PyThreadState_Swap(caller);
    PyThreadState_Delete(own);
    PyThread_release_lock(self->attaching);
}

PyDoc_STRVAR(stop_doc,
"stop(call, exception)\n--\n\n"
"Raise `exception`, a class of the interpreter's __main__, in call number `call` if it still runs there.\n\n"
"Return whether it was raised. The exception lands at the call's next bytecode: code that\n"
"runs in C without releasing the interpreter's GIL is not stopped (and this waits for that\n"
"GIL): call it from a thread that may wait.");

static PyObject *
DirectCall_stop(DirectCall *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !PyLong_Check(args[0]) || !PyUnicode_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "stop(call: int, exception: str)");
        return NULL;
    }
    unsigned long long call = PyLong_AsUnsignedLongLong(args[0]);
    if (call == (unsigned long long)-1 && PyErr_Occurred()) {
        return NULL;
    }
    const char *name = PyUnicode_AsUTF8(args[1]);
    if (name == NULL) {
        return NULL;
    }
    if (call == 0 || atomic_load(&self->running) != call) {
        Py_RETURN_FALSE;
    }
    PyThreadState *caller = NULL;
    PyThreadState *own = attach_fresh(self, &caller);
    if (own == NULL) {
        if (PyErr_Occurred()) {
            return NULL;
        }
        Py_RETURN_FALSE;
    }
    int sent = 0;
    /* Holding the interpreter's GIL: the call cannot end under us. */
    if (atomic_load(&self->running) == call) {
        PyObject *main_module = PyImport_AddModuleRef("__main__");
        PyObject *exception = main_module ? PyObject_GetAttrString(main_module, name) : NULL;
        if (exception != NULL && PyExceptionClass_Check(exception)
            && PyThreadState_SetAsyncExc(self->running_thread, exception) > 0) {
            self->stop_sent = 1;
            sent = 1;
        }
        Py_XDECREF(exception);
        Py_XDECREF(main_module);
    }
    leave_fresh(self, own, caller);
    return PyBool_FromLong(sent);
}

PyDoc_STRVAR(raise_in_threads_doc,
"raise_in_threads(idents)\n--\n\n"
"Raise SystemExit asynchronously in the interpreter's threads of these idents; return how many were found.\n\n"
"For threads a UDF started, so the interpreter can be destroyed. Waits for the interpreter's GIL.");

static PyObject *
DirectCall_raise_in_threads(DirectCall *self, PyObject *idents)
{
    if (!PyTuple_Check(idents)) {
        PyErr_SetString(PyExc_TypeError, "raise_in_threads(idents: tuple[int, ...])");
        return NULL;
    }
    Py_ssize_t count = PyTuple_GET_SIZE(idents);
    unsigned long *threads = PyMem_RawMalloc((count ? count : 1) * sizeof(unsigned long));
    if (threads == NULL) {
        return PyErr_NoMemory();
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        threads[i] = PyLong_AsUnsignedLong(PyTuple_GET_ITEM(idents, i));
        if (threads[i] == (unsigned long)-1 && PyErr_Occurred()) {
            PyMem_RawFree(threads);
            return NULL;
        }
    }
    PyThreadState *caller = NULL;
    PyThreadState *own = attach_fresh(self, &caller);
    if (own == NULL) {
        PyMem_RawFree(threads);
        if (PyErr_Occurred()) {
            return NULL;
        }
        return PyLong_FromLong(0);
    }
    long found = 0;
    for (Py_ssize_t i = 0; i < count; i++) {
        /* SystemExit is a static type, shared by every interpreter. */
        found += PyThreadState_SetAsyncExc(threads[i], PyExc_SystemExit);
    }
    leave_fresh(self, own, caller);
    PyMem_RawFree(threads);
    return PyLong_FromLong(found);
}

PyDoc_STRVAR(forget_doc,
"forget()\n--\n\n"
"Drop the interpreter without touching it: for a process forked from the one that made it.\n\n"
"After fork() the child has no such interpreter (CPython deleted it, or the child would not run):\n"
"its thread states and objects are gone, so they are let go of, not freed.");

static PyObject *
DirectCall_forget(DirectCall *self, PyObject *Py_UNUSED(ignored))
{
    /* Threads that held these locks in the parent do not exist here. */
    PyThread_type_lock busy = PyThread_allocate_lock();
    PyThread_type_lock attaching = PyThread_allocate_lock();
    if (busy == NULL || attaching == NULL) {
        if (busy != NULL) {
            PyThread_free_lock(busy);
        }
        if (attaching != NULL) {
            PyThread_free_lock(attaching);
        }
        return PyErr_NoMemory();
    }
    self->busy = busy;           /* the parent's copies are leaked: they may be held */
    self->attaching = attaching;
    self->interp = NULL;
    atomic_store(&self->running, 0);
    self->stop_sent = 0;
    while (self->records != NULL) {
        Record *record = self->records;
        self->records = record->next;
        token_release(record->token);
        PyMem_RawFree(record);
    }
    for (int i = 0; i < MAX_TARGETS; i++) {
        self->targets[i] = NULL;
        PyMem_RawFree(self->target_names[i]);
        self->target_names[i] = NULL;
    }
    /* The caller's buffers are objects of this (main) interpreter: release them. */
    Held *held = self->held;
    self->held = NULL;
    for (Held *each = held; each != NULL; each = each->next) {
        each->managed = NULL;
    }
    release_held(held);
    Py_RETURN_NONE;
}

static PyObject *
DirectCall_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"interpreter_id", NULL};
    long long interpreter_id;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "L", keywords, &interpreter_id)) {
        return NULL;
    }
    PyInterpreterState *interp = _PyInterpreterState_LookUpID(interpreter_id);
    if (interp == NULL) {
        if (!PyErr_Occurred()) {
            PyErr_Format(PyExc_ValueError, "no interpreter with id %lld", interpreter_id);
        }
        return NULL;
    }
    if (interp == PyInterpreterState_Get()) {
        PyErr_SetString(PyExc_ValueError, "cannot call into the current interpreter");
        return NULL;
    }
    DirectCall *self = (DirectCall *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->busy = PyThread_allocate_lock();
    self->attaching = PyThread_allocate_lock();
    if (self->busy == NULL || self->attaching == NULL) {
        Py_DECREF(self);
        return PyErr_NoMemory();
    }
    self->interpreter_id = interpreter_id;
    self->interp = interp;
    return (PyObject *)self;
}

static void
DirectCall_dealloc(DirectCall *self)
{
    if (self->interp != NULL && detach(self) < 0) {
        PyErr_WriteUnraisable((PyObject *)self);
    }
    /* The interpreter is gone or no longer refers to these (detach). */
    Held *held = self->held;
    self->held = NULL;
    release_held(held);
    if (self->busy != NULL) {
        PyThread_free_lock(self->busy);
    }
    if (self->attaching != NULL) {
        PyThread_free_lock(self->attaching);
    }
    PyTypeObject *type = Py_TYPE(self);
    type->tp_free((PyObject *)self);
    Py_DECREF(type);
}

static PyObject *
DirectCall_get_interpreter_id(DirectCall *self, void *Py_UNUSED(closure))
{
    return PyLong_FromLongLong(self->interpreter_id);
}

static PyObject *
DirectCall_get_held(DirectCall *self, void *Py_UNUSED(closure))
{
    Py_ssize_t count = 0;
    for (Held *held = self->held; held != NULL; held = held->next) {
        count++;
    }
    return PyLong_FromSsize_t(count);
}

static PyObject *
DirectCall_get_thread_states(DirectCall *self, void *Py_UNUSED(closure))
{
    Py_ssize_t count = 0;
    for (Record *record = self->records; record != NULL; record = record->next) {
        count++;
    }
    return PyLong_FromSsize_t(count);
}

static PyObject *
DirectCall_get_running(DirectCall *self, void *Py_UNUSED(closure))
{
    /* The number and start of one call: read again if another began in between. */
    for (;;) {
        unsigned long long call = atomic_load_explicit(&self->running, memory_order_acquire);
        if (call == 0) {
            Py_RETURN_NONE;
        }
        unsigned long generation = atomic_load_explicit(&self->running_generation, memory_order_relaxed);
        if (atomic_load_explicit(&self->running, memory_order_acquire) == call) {
            return Py_BuildValue("(Kk)", call, generation);
        }
    }
}

static PyMethodDef DirectCall_methods[] = {
    {"call", (PyCFunction)(void (*)(void))DirectCall_call, METH_FASTCALL, call_doc},
    {"detach", (PyCFunction)DirectCall_detach, METH_NOARGS, detach_doc},
    {"stop", (PyCFunction)(void (*)(void))DirectCall_stop, METH_FASTCALL, stop_doc},
    {"raise_in_threads", (PyCFunction)DirectCall_raise_in_threads, METH_O, raise_in_threads_doc},
    {"forget", (PyCFunction)DirectCall_forget, METH_NOARGS, forget_doc},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef DirectCall_getset[] = {
    {"interpreter_id", (getter)DirectCall_get_interpreter_id, NULL, "The interpreter called into.", NULL},
    {"held_buffers", (getter)DirectCall_get_held, NULL,
     "Caller's buffers kept because the interpreter still refers to them.", NULL},
    {"thread_states", (getter)DirectCall_get_thread_states, NULL,
     "Thread states kept in the interpreter, one per OS thread that called.", NULL},
    {"running", (getter)DirectCall_get_running, NULL,
     "(number, sigint_count() when it started) of the call running in the interpreter now, or None; "
     "numbers count from 1.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot DirectCall_slots[] = {
    {Py_tp_doc, "DirectCall(interpreter_id)\n--\n\nCall functions of an isolated interpreter on the calling thread."},
    {Py_tp_new, DirectCall_new},
    {Py_tp_dealloc, DirectCall_dealloc},
    {Py_tp_methods, DirectCall_methods},
    {Py_tp_getset, DirectCall_getset},
    {0, NULL},
};

static PyType_Spec DirectCall_spec = {
    .name = "duckdb_subinterp._direct.DirectCall",
    .basicsize = sizeof(DirectCall),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = DirectCall_slots,
};

/* ---- SettledCall -------------------------------------------------------- */

/* backend="auto" runs a cheap UDF in the calling DuckDB thread, as
   DuckDB's own does, once the dispatcher has timed its batches there. Most
   of its batches then need nothing but the call: this object makes it, and
   counts the batches and their rows, in C (~30 ns), where a Python wrapper
   costs 1 to 3 us a batch inside a query, on ~30 to 130 us of DuckDB's own
   (bench/duckdb_udf_perf.py). `function` is an arrow UDF's own function,
   or the dispatcher's run of a native or vectorized UDF's batch without
   its placement and timing (~18 us a batch less). While `left` > 0 it
   calls `function` and counts down; then (and for a batch of no arguments)
   it calls `fallback`, the dispatcher, which times and places the batch
   and may set `left` again. Two guards end a streak early, so it may be
   long: with `thread` set, a call from another thread goes to `fallback`
   (another DuckDB thread calls: the pool may pay now); with `slow_per_row`
   set, a call whose rows took longer than that each (a costlier part of
   the data) ends it after the call (two clock reads, ~50 ns). They set
   `left` to -2 (another thread called) or -1, so the dispatcher tells a
   streak ended early from one run to its end. `ended` says when the last
   timed call since `thread` was set ended (time.perf_counter()'s clock),
   so the thread a call from another displaced counts as calling only if
   it lately did. An exception from `function` goes to `on_error`, which
   raises the error the query reports. Everything runs under the main GIL,
   so the counts are exact whatever thread calls. */

typedef struct {
    PyObject_HEAD
    PyObject *function;
    PyObject *fallback;
    PyObject *on_error;
    Py_ssize_t left;
    unsigned long thread;  /* 0: any thread */
    double slow_per_row;   /* seconds; 0: calls not timed */
    PyTime_t ended;        /* when the last timed call since `thread` was set ended; 0: none */
    long long batches;
    long long rows;
    vectorcallfunc vectorcall;
    PyObject *weakrefs;
} SettledCall;

static PyObject *
SettledCall_vectorcall(PyObject *op, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    SettledCall *self = (SettledCall *)op;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (self->thread != 0 && self->left > 0 && PyThread_get_thread_ident() != self->thread) {
        self->left = -2;
    }
    if (self->left <= 0 || nargs < 1 || kwnames != NULL) {
        return PyObject_Vectorcall(self->fallback, args, nargsf, kwnames);
    }
    Py_ssize_t rows = PyObject_Length(args[0]);
    if (rows < 0) {
        return NULL;
    }
    self->left--;
    self->batches++;
    self->rows += rows;
    double slow = self->slow_per_row;
    PyTime_t started = 0, ended = 0;
    if (slow > 0 && (rows == 0 || PyTime_PerfCounterRaw(&started) < 0)) {
        slow = 0; /* not timed (it does not fail on the platforms built for) */
    }
    PyObject *function = Py_NewRef(self->function); /* `function` may be replaced during the call */
    PyObject *result = PyObject_Vectorcall(function, args, nargsf, NULL);
    Py_DECREF(function);
    if (slow > 0 && PyTime_PerfCounterRaw(&ended) == 0) {
        self->ended = ended;
        if (PyTime_AsSecondsDouble(ended - started) > slow * (double)rows) {
            self->left = -1;
        }
    }
    if (result == NULL && self->on_error != Py_None) {
        PyObject *error = PyErr_GetRaisedException();
        if (error == NULL) {
            return NULL;
        }
        if (!PyErr_GivenExceptionMatches(error, PyExc_Exception) &&
            !PyErr_GivenExceptionMatches(error, PyExc_SystemExit) &&
            !PyErr_GivenExceptionMatches(error, PyExc_KeyboardInterrupt) &&
            !PyErr_GivenExceptionMatches(error, PyExc_GeneratorExit)) {
            PyErr_SetRaisedException(error);
            return NULL;
        }
        PyObject *replaced = PyObject_CallOneArg(self->on_error, error);
        Py_DECREF(error);
        Py_XDECREF(replaced); /* on_error raises; a return is an error of its own */
        if (replaced != NULL) {
            PyErr_SetString(PyExc_RuntimeError, "SettledCall: on_error returned instead of raising");
        }
        return NULL;
    }
    return result;
}

static PyObject *
SettledCall_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"function", "fallback", "on_error", NULL};
    PyObject *function, *fallback, *on_error = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO|O:SettledCall", keywords, &function, &fallback, &on_error)) {
        return NULL;
    }
    SettledCall *self = (SettledCall *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->function = Py_NewRef(function);
    self->fallback = Py_NewRef(fallback);
    self->on_error = Py_NewRef(on_error);
    self->vectorcall = SettledCall_vectorcall;
    return (PyObject *)self;
}

static int
SettledCall_traverse(PyObject *op, visitproc visit, void *arg)
{
    SettledCall *self = (SettledCall *)op;
    Py_VISIT(Py_TYPE(op));
    Py_VISIT(self->function);
    Py_VISIT(self->fallback);
    Py_VISIT(self->on_error);
    return 0;
}

static int
SettledCall_clear(PyObject *op)
{
    SettledCall *self = (SettledCall *)op;
    Py_CLEAR(self->function);
    Py_CLEAR(self->fallback);
    Py_CLEAR(self->on_error);
    return 0;
}

static void
SettledCall_dealloc(PyObject *op)
{
    PyTypeObject *type = Py_TYPE(op);
    PyObject_GC_UnTrack(op);
    if (((SettledCall *)op)->weakrefs != NULL) {
        PyObject_ClearWeakRefs(op);
    }
    SettledCall_clear(op);
    type->tp_free(op);
    Py_DECREF(type);
}

static PyObject *
SettledCall_call(PyObject *op, PyObject *args, PyObject *kwargs)
{
    return PyVectorcall_Call(op, args, kwargs);
}

PyDoc_STRVAR(take_counts_doc,
"take_counts()\n--\n\n"
"Return (batches, rows) called through `function` since the last take, and start again from 0.");

static PyObject *
SettledCall_take_counts(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    SettledCall *self = (SettledCall *)op;
    PyObject *counts = Py_BuildValue("(LL)", self->batches, self->rows);
    if (counts != NULL) {
        self->batches = self->rows = 0;
    }
    return counts;
}

static PyObject *
SettledCall_get_left(PyObject *op, void *Py_UNUSED(closure))
{
    return PyLong_FromSsize_t(((SettledCall *)op)->left);
}

static int
SettledCall_set_left(PyObject *op, PyObject *value, void *Py_UNUSED(closure))
{
    if (value == NULL) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete left");
        return -1;
    }
    Py_ssize_t left = PyLong_AsSsize_t(value);
    if (left == -1 && PyErr_Occurred()) {
        return -1;
    }
    ((SettledCall *)op)->left = left;
    return 0;
}

static PyObject *
SettledCall_get_function(PyObject *op, void *Py_UNUSED(closure))
{
    return Py_NewRef(((SettledCall *)op)->function);
}

static int
SettledCall_set_function(PyObject *op, PyObject *value, void *Py_UNUSED(closure))
{
    if (value == NULL) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete function");
        return -1;
    }
    Py_SETREF(((SettledCall *)op)->function, Py_NewRef(value));
    return 0;
}

static PyObject *
SettledCall_get_thread(PyObject *op, void *Py_UNUSED(closure))
{
    return PyLong_FromUnsignedLong(((SettledCall *)op)->thread);
}

static int
SettledCall_set_thread(PyObject *op, PyObject *value, void *Py_UNUSED(closure))
{
    if (value == NULL) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete thread");
        return -1;
    }
    unsigned long thread = PyLong_AsUnsignedLong(value);
    if (thread == (unsigned long)-1 && PyErr_Occurred()) {
        return -1;
    }
    SettledCall *self = (SettledCall *)op;
    self->thread = thread;
    self->ended = 0; /* an end before belongs to whatever thread called then */
    return 0;
}

static PyObject *
SettledCall_get_ended(PyObject *op, void *Py_UNUSED(closure))
{
    return PyFloat_FromDouble(PyTime_AsSecondsDouble(((SettledCall *)op)->ended));
}

static PyMethodDef SettledCall_methods[] = {
    {"take_counts", SettledCall_take_counts, METH_NOARGS, take_counts_doc},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef SettledCall_getset[] = {
    {"left", SettledCall_get_left, SettledCall_set_left, "Calls still made through `function` before `fallback` again.", NULL},
    {"function", SettledCall_get_function, SettledCall_set_function, "What the next calls call while `left` > 0.", NULL},
    {"thread", SettledCall_get_thread, SettledCall_set_thread,
     "While not 0: a call from another thread ident goes to `fallback`, `left` set to -2.", NULL},
    {"ended", SettledCall_get_ended, NULL,
     "When the last timed call since `thread` was set ended, in time.perf_counter() seconds; 0.0: none.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMemberDef SettledCall_members[] = {
    {"__vectorcalloffset__", Py_T_PYSSIZET, offsetof(SettledCall, vectorcall), Py_READONLY, NULL},
    {"__weaklistoffset__", Py_T_PYSSIZET, offsetof(SettledCall, weakrefs), Py_READONLY, NULL},
    {"slow_per_row", Py_T_DOUBLE, offsetof(SettledCall, slow_per_row), 0,
     "While > 0: a call whose rows took longer than this many seconds each sets `left` to -1."},
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot SettledCall_slots[] = {
    {Py_tp_doc, "SettledCall(function, fallback, on_error=None)\n--\n\n"
                "Call `function` for the next `left` batches, counting them, then `fallback` (see _direct.c)."},
    {Py_tp_new, SettledCall_new},
    {Py_tp_dealloc, SettledCall_dealloc},
    {Py_tp_traverse, SettledCall_traverse},
    {Py_tp_clear, SettledCall_clear},
    {Py_tp_call, SettledCall_call},
    {Py_tp_methods, SettledCall_methods},
    {Py_tp_getset, SettledCall_getset},
    {Py_tp_members, SettledCall_members},
    {0, NULL},
};

static PyType_Spec SettledCall_spec = {
    .name = "duckdb_subinterp._direct.SettledCall",
    .basicsize = sizeof(SettledCall),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .slots = SettledCall_slots,
};

/* ---- Ctrl-C ------------------------------------------------------------ */

/* A call running in an interpreter never sees SIGINT: CPython handles
   signals in the main interpreter's main thread only, and DuckDB, which
   turns Ctrl-C into a cancelled query, waits for the call to return. So
   SIGINTs are also counted here, by a handler chained in front of the one
   installed (Python's), for the pool's watchdog to read. */
static PyOS_sighandler_t sigint_next = SIG_DFL;

static void
note_sigint(int signum)
{
    atomic_fetch_add(&sigint_generation, 1); /* lock-free: async-signal-safe */
    PyOS_sighandler_t next = sigint_next;
    if (next != SIG_DFL && next != SIG_IGN && next != SIG_ERR && next != note_sigint) {
        next(signum);
    }
}

PyDoc_STRVAR(watch_sigint_doc,
"watch_sigint()\n--\n\n"
"Count SIGINT in front of the installed handler (again, if Python replaced ours); return whether it is counted.\n\n"
"Nothing is installed while SIGINT is ignored or has its default action.");

static PyObject *
watch_sigint(PyObject *module, PyObject *Py_UNUSED(ignored))
{
    PyOS_sighandler_t current = PyOS_getsig(SIGINT);
    if (current == note_sigint) {
        Py_RETURN_TRUE;
    }
    if (current == SIG_DFL || current == SIG_IGN || current == SIG_ERR) {
        Py_RETURN_FALSE;
    }
    sigint_next = current;
    if (PyOS_setsig(SIGINT, note_sigint) == SIG_ERR) {
        Py_RETURN_FALSE;
    }
    Py_RETURN_TRUE;
}

PyDoc_STRVAR(sigint_count_doc,
"sigint_count()\n--\n\n"
"Return how many SIGINTs were noted since watch_sigint() first installed the handler.");

static PyObject *
sigint_count(PyObject *module, PyObject *Py_UNUSED(ignored))
{
    return PyLong_FromUnsignedLong(atomic_load(&sigint_generation));
}

static PyMethodDef module_methods[] = {
    {"watch_sigint", watch_sigint, METH_NOARGS, watch_sigint_doc},
    {"sigint_count", sigint_count, METH_NOARGS, sigint_count_doc},
    {NULL, NULL, 0, NULL},
};

/* ---- module ------------------------------------------------------------ */

static int
module_exec(PyObject *module)
{
    static int key_made = 0;
    if (!key_made) {
        if (pthread_key_create(&token_key, token_thread_exit) != 0) {
            PyErr_SetString(PyExc_RuntimeError, "pthread_key_create failed");
            return -1;
        }
        key_made = 1;
    }
    PyObject *type = PyType_FromModuleAndSpec(module, &DirectCall_spec, NULL);
    if (type == NULL) {
        return -1;
    }
    int status = PyModule_AddObjectRef(module, "DirectCall", type);
    Py_DECREF(type);
    if (status < 0) {
        return -1;
    }
    type = PyType_FromModuleAndSpec(module, &SettledCall_spec, NULL);
    if (type == NULL) {
        return -1;
    }
    status = PyModule_AddObjectRef(module, "SettledCall", type);
    Py_DECREF(type);
    return status;
}

static PyModuleDef_Slot module_slots[] = {
    {Py_mod_exec, module_exec},
    /* Loaded by the main interpreter only; refuse the others. */
    {Py_mod_multiple_interpreters, Py_MOD_MULTIPLE_INTERPRETERS_NOT_SUPPORTED},
    {0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "duckdb_subinterp._direct",
    .m_doc = "Call functions of an isolated interpreter on the calling thread, keeping its thread states.",
    .m_size = 0,
    .m_methods = module_methods,
    .m_slots = module_slots,
};

PyMODINIT_FUNC
PyInit__direct(void)
{
    return PyModuleDef_Init(&module_def);
}
