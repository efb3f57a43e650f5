/* Read DuckDB's Arrow arguments through the Arrow C data interface, in C.

   Inside a query every pyarrow call costs 1 to 3 us (DuckDB's own work
   evicts the caches between batches): chunk(0), .type, .equals(),
   .buffers(), .null_count, .offset, a memoryview per buffer... ~6 us a
   BIGINT column. read_stream() takes the column's __arrow_c_stream__()
   capsule and returns, in one call, every node of the array with its
   buffers as read-only memoryviews sized from the format, plus a layout
   signature that the caller compares with the one it expects: ~1 us.

   A memoryview's exporter holds the imported array, which is released
   (pyarrow's buffers let go) when the last view of it is gone.

   Main interpreter only, like _direct. Spec:
   https://arrow.apache.org/docs/format/CDataInterface.html
*/
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---- the C data interface's structs (from the spec, ABI-stable) --------- */

struct ArrowSchema {
    const char *format;
    const char *name;
    const char *metadata;
    int64_t flags;
    int64_t n_children;
    struct ArrowSchema **children;
    struct ArrowSchema *dictionary;
    void (*release)(struct ArrowSchema *);
    void *private_data;
};

struct ArrowArray {
    int64_t length;
    int64_t null_count;
    int64_t offset;
    int64_t n_buffers;
    int64_t n_children;
    const void **buffers;
    struct ArrowArray **children;
    struct ArrowArray *dictionary;
    void (*release)(struct ArrowArray *);
    void *private_data;
};

struct ArrowArrayStream {
    int (*get_schema)(struct ArrowArrayStream *, struct ArrowSchema *out);
    int (*get_next)(struct ArrowArrayStream *, struct ArrowArray *out);
    const char *(*get_last_error)(struct ArrowArrayStream *);
    void (*release)(struct ArrowArrayStream *);
    void *private_data;
};

/* ---- the owner of an imported array ------------------------------------- */

static const char OWNER_NAME[] = "duckdb_subinterp._arrowc.array";

static void
owner_destroy(PyObject *capsule)
{
    struct ArrowArray *array = PyCapsule_GetPointer(capsule, OWNER_NAME);
    if (array != NULL) {
        if (array->release != NULL) {
            array->release(array);
        }
        free(array);
    }
}

/* ---- a buffer of it, as a memoryview's exporter ------------------------- */

typedef struct {
    PyObject_HEAD
    PyObject *owner;
    void *data;
    Py_ssize_t size;
} ArrowBuffer;

static int
ArrowBuffer_getbuffer(ArrowBuffer *self, Py_buffer *view, int flags)
{
    /* Read-only: a UDF must not write into DuckDB's input. */
    return PyBuffer_FillInfo(view, (PyObject *)self, self->data, self->size, 1, flags);
}

static void
ArrowBuffer_dealloc(ArrowBuffer *self)
{
    PyTypeObject *type = Py_TYPE(self);
    Py_XDECREF(self->owner);
    type->tp_free(self);
    Py_DECREF(type);
}

static PyType_Slot ArrowBuffer_slots[] = {
    {Py_tp_doc, "One buffer of an Arrow array imported through the C data interface."},
    {Py_bf_getbuffer, ArrowBuffer_getbuffer},
    {Py_tp_dealloc, ArrowBuffer_dealloc},
    {0, NULL},
};

static PyType_Spec ArrowBuffer_spec = {
    .name = "duckdb_subinterp._arrowc.ArrowBuffer",
    .basicsize = sizeof(ArrowBuffer),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = ArrowBuffer_slots,
};

typedef struct {
    PyTypeObject *buffer_type;
} ModuleState;

/* ---- sizes of a node's buffers, from its format --------------------------- */

/* Bytes per value of a fixed-width format, 0 if it is not one. */
static int64_t
fixed_width(const char *format)
{
    switch (format[0]) {
    case 'c': case 'C': return format[1] == '\0' ? 1 : 0;
    case 's': case 'S': case 'e': return format[1] == '\0' ? 2 : 0;
    case 'i': case 'I': case 'f': return format[1] == '\0' ? 4 : 0;
    case 'l': case 'L': case 'g': return format[1] == '\0' ? 8 : 0;
    case 'w': return format[1] == ':' ? strtoll(format + 2, NULL, 10) : 0;
    case 'd': {
        /* d:precision,scale[,bit width]; 128 bits unless said otherwise */
        const char *comma = strchr(format, ',');
        const char *width = comma != NULL ? strchr(comma + 1, ',') : NULL;
        return width != NULL ? strtoll(width + 1, NULL, 10) / 8 : 16;
    }
    case 't':
        switch (format[1]) {
        case 'd': return format[2] == 'D' ? 4 : 8;          /* date32, date64 */
        case 't': return format[2] == 's' || format[2] == 'm' ? 4 : 8;
        case 's': case 'D': return 8;                        /* timestamp, duration */
        case 'i': return format[2] == 'M' ? 4 : format[2] == 'D' ? 8 : 16;
        }
    }
    return 0;
}

/* Fill sizes[0..n_buffers) for one node; return 0, or -1 for a layout
   this reader does not know (string views, unions, ...). */
static int
buffer_sizes(const char *format, const struct ArrowArray *array, int64_t *sizes)
{
    int64_t end = array->offset + array->length;
    int64_t bitmap = (end + 7) / 8;
    int64_t width;
    if (array->n_buffers < 1 || array->n_buffers > 3) {
        return -1;
    }
    sizes[0] = bitmap;
    if (strcmp(format, "b") == 0 && array->n_buffers == 2) {
        sizes[1] = bitmap;
        return 0;
    }
    if ((width = fixed_width(format)) > 0 && array->n_buffers == 2) {
        sizes[1] = width * end;
        return 0;
    }
    if ((strcmp(format, "u") == 0 || strcmp(format, "z") == 0) && array->n_buffers == 3) {
        const int32_t *offsets = array->buffers[1];
        sizes[1] = 4 * (end + 1);
        sizes[2] = offsets != NULL ? offsets[end] : 0;
        return 0;
    }
    if ((strcmp(format, "U") == 0 || strcmp(format, "Z") == 0) && array->n_buffers == 3) {
        const int64_t *offsets = array->buffers[1];
        sizes[1] = 8 * (end + 1);
        sizes[2] = offsets != NULL ? offsets[end] : 0;
        return 0;
    }
    if ((strcmp(format, "+l") == 0 || strcmp(format, "+m") == 0) && array->n_buffers == 2) {
        sizes[1] = 4 * (end + 1);
        return 0;
    }
    if (strcmp(format, "+L") == 0 && array->n_buffers == 2) {
        sizes[1] = 8 * (end + 1);
        return 0;
    }
    if ((strcmp(format, "+s") == 0 || strncmp(format, "+w:", 3) == 0) && array->n_buffers == 1) {
        return 0;
    }
    return -1;
}

static int64_t
count_nulls(const uint8_t *bitmap, int64_t offset, int64_t length)
{
    int64_t valid = 0;
    for (int64_t bit = offset; bit < offset + length; bit++) {
        valid += (bitmap[bit >> 3] >> (bit & 7)) & 1;
    }
    return length - valid;
}

/* ---- the walk ------------------------------------------------------------- */

typedef struct {
    PyTypeObject *buffer_type;
    PyObject *owner;
    char *signature;
    size_t used, capacity;
} Walk;

static int
append(Walk *walk, const char *text, size_t length)
{
    if (walk->used + length + 1 > walk->capacity) {
        size_t capacity = (walk->used + length + 1) * 2;
        char *grown = realloc(walk->signature, capacity);
        if (grown == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        walk->signature = grown;
        walk->capacity = capacity;
    }
    memcpy(walk->signature + walk->used, text, length);
    walk->used += length;
    walk->signature[walk->used] = '\0';
    return 0;
}

static PyObject *
buffer_view(Walk *walk, const void *data, int64_t size)
{
    if (data == NULL) {
        Py_RETURN_NONE;
    }
    ArrowBuffer *buffer = PyObject_New(ArrowBuffer, walk->buffer_type);
    if (buffer == NULL) {
        return NULL;
    }
    buffer->owner = Py_NewRef(walk->owner);
    buffer->data = (void *)data;
    buffer->size = (Py_ssize_t)size;
    PyObject *view = PyMemoryView_FromObject((PyObject *)buffer);
    Py_DECREF(buffer);
    return view;
}

/* One node: (length, offset, null_count, buffers, children, dictionary,
   format). Py_None (not an error) where the layout is unknown. */
static PyObject *
read_node(Walk *walk, const struct ArrowSchema *schema, const struct ArrowArray *array)
{
    const char *format = schema->format;
    int64_t sizes[3] = {0, 0, 0};
    if (schema->n_children != array->n_children || (schema->dictionary == NULL) != (array->dictionary == NULL)
        || buffer_sizes(format, array, sizes) < 0) {
        Py_RETURN_NONE;
    }
    /* A time zone is data, not layout: the signature leaves it out. */
    size_t format_length = strlen(format);
    if (format[0] == 't' && format[1] == 's' && format_length > 4) {
        format_length = 4;
    }
    if (append(walk, format, format_length) < 0) {
        return NULL;
    }
    int64_t null_count = array->null_count;
    if (null_count < 0) {
        null_count = array->buffers[0] != NULL ? count_nulls(array->buffers[0], array->offset, array->length) : 0;
    }
    PyObject *buffers = PyTuple_New(array->n_buffers);
    PyObject *children = PyTuple_New(array->n_children);
    PyObject *dictionary = NULL;
    if (buffers == NULL || children == NULL) {
        goto error;
    }
    for (int64_t index = 0; index < array->n_buffers; index++) {
        /* Validity is read only where there are NULLs. */
        const void *data = index == 0 && null_count == 0 ? NULL : array->buffers[index];
        PyObject *view = buffer_view(walk, data, sizes[index]);
        if (view == NULL) {
            goto error;
        }
        PyTuple_SET_ITEM(buffers, index, view);
    }
    for (int64_t index = 0; index < array->n_children; index++) {
        if (append(walk, index == 0 ? "(" : ",", 1) < 0) {
            goto error;
        }
        PyObject *child = read_node(walk, schema->children[index], array->children[index]);
        if (child == NULL || child == Py_None) {
            Py_XDECREF(children);
            Py_DECREF(buffers);
            return child;
        }
        PyTuple_SET_ITEM(children, index, child);
    }
    if (array->n_children > 0 && append(walk, ")", 1) < 0) {
        goto error;
    }
    if (array->dictionary != NULL) {
        if (append(walk, "{", 1) < 0) {
            goto error;
        }
        dictionary = read_node(walk, schema->dictionary, array->dictionary);
        if (dictionary == NULL || dictionary == Py_None) {
            Py_DECREF(children);
            Py_DECREF(buffers);
            return dictionary;
        }
        if (append(walk, "}", 1) < 0) {
            goto error;
        }
    }
    else {
        dictionary = Py_NewRef(Py_None);
    }
    return Py_BuildValue("(LLLNNNs)", (long long)array->length, (long long)array->offset, (long long)null_count,
                         buffers, children, dictionary, format);
error:
    Py_XDECREF(buffers);
    Py_XDECREF(children);
    Py_XDECREF(dictionary);
    return NULL;
}

static PyObject *
read_stream(PyObject *module, PyObject *capsule)
{
    struct ArrowArrayStream *stream = PyCapsule_GetPointer(capsule, "arrow_array_stream");
    if (stream == NULL) {
        return NULL;
    }
    if (stream->release == NULL) {
        PyErr_SetString(PyExc_ValueError, "the Arrow stream was released already");
        return NULL;
    }
    struct ArrowSchema schema = {0};
    struct ArrowArray *array = calloc(1, sizeof(struct ArrowArray));
    struct ArrowArray extra = {0};
    PyObject *result = NULL;
    Walk walk = {.buffer_type = ((ModuleState *)PyModule_GetState(module))->buffer_type};
    if (array == NULL) {
        return PyErr_NoMemory();
    }
    if (stream->get_schema(stream, &schema) != 0 || stream->get_next(stream, array) != 0) {
        const char *message = stream->get_last_error(stream);
        PyErr_Format(PyExc_RuntimeError, "reading the Arrow stream failed: %s", message ? message : "no message");
        goto done;
    }
    if (array->release == NULL) {
        result = Py_NewRef(Py_None); /* no chunk at all */
        goto done;
    }
    if (stream->get_next(stream, &extra) != 0 || extra.release != NULL) {
        if (extra.release != NULL) {
            extra.release(&extra);
        }
        result = Py_NewRef(Py_None); /* more than one chunk: the caller combines them */
        goto done;
    }
    /* From here the capsule owns the array, whatever happens. */
    walk.owner = PyCapsule_New(array, OWNER_NAME, owner_destroy);
    if (walk.owner == NULL) {
        goto done;
    }
    array = NULL;
    struct ArrowArray *owned = PyCapsule_GetPointer(walk.owner, OWNER_NAME);
    PyObject *node = read_node(&walk, &schema, owned);
    if (node == NULL || node == Py_None) {
        result = node;
        goto done;
    }
    result = Py_BuildValue("(sN)", walk.signature, node);
done:
    if (schema.release != NULL) {
        schema.release(&schema);
    }
    if (array != NULL) {
        if (array->release != NULL) {
            array->release(array);
        }
        free(array);
    }
    Py_XDECREF(walk.owner);
    free(walk.signature);
    return result;
}

/* ---- module ------------------------------------------------------------ */

static PyMethodDef module_methods[] = {
    {"read_stream", (PyCFunction)read_stream, METH_O,
     "read_stream(capsule)\n--\n\n"
     "Read the one chunk of an __arrow_c_stream__() capsule: return (layout signature, node), where a node is\n"
     "(length, offset, null_count, buffers, children, dictionary, format) and buffers are read-only memoryviews\n"
     "(None where absent, and for validity where there are no NULLs). Return None for a stream of other than one\n"
     "chunk or a layout this reader does not know."},
    {NULL, NULL, 0, NULL},
};

static int
module_exec(PyObject *module)
{
    ModuleState *state = PyModule_GetState(module);
    state->buffer_type = (PyTypeObject *)PyType_FromModuleAndSpec(module, &ArrowBuffer_spec, NULL);
    return state->buffer_type == NULL ? -1 : 0;
}

static int
module_traverse(PyObject *module, visitproc visit, void *arg)
{
    Py_VISIT(((ModuleState *)PyModule_GetState(module))->buffer_type);
    return 0;
}

static int
module_clear(PyObject *module)
{
    Py_CLEAR(((ModuleState *)PyModule_GetState(module))->buffer_type);
    return 0;
}

static PyModuleDef_Slot module_slots[] = {
    {Py_mod_exec, module_exec},
    {Py_mod_multiple_interpreters, Py_MOD_MULTIPLE_INTERPRETERS_NOT_SUPPORTED},
    {0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "duckdb_subinterp._arrowc",
    .m_doc = "Read Arrow arrays through the C data interface into memoryviews, on the main side.",
    .m_size = sizeof(ModuleState),
    .m_methods = module_methods,
    .m_slots = module_slots,
    .m_traverse = module_traverse,
    .m_clear = module_clear,
};

PyMODINIT_FUNC
PyInit__arrowc(void)
{
    return PyModuleDef_Init(&module_def);
}
