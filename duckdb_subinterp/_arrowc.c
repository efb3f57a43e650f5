/* DuckDB's Arrow arguments read, and the UDF's result built, through the
   Arrow C data interface, in C.

   Inside a query every pyarrow call costs 1 to 3 us: chunk(0), .type,
   .equals(), .buffers(), .null_count, .offset, a memoryview per buffer...
   ~6 us a BIGINT column. read_stream() takes the column's
   __arrow_c_stream__() capsule and returns, in one call, every node of the
   array with its buffers as read-only memoryviews sized from the format,
   plus a layout signature that the caller compares with the one it
   expects: ~2 us, the capsule included.

   A memoryview's exporter holds the imported array, which is released
   (pyarrow's buffers let go) when the last view of it is gone.

   Results: an OutputBlock is one allocation holding every result buffer;
   the worker writes into its views, then export() describes the written
   buffers as an ArrowArray for pyarrow.Array._import_from_c. In a query
   that replaces pa.allocate_buffer, memoryviews and slices of pyarrow
   buffers and Array.from_buffers. The block's memory is reference counted
   without Python: the array's release callback may run on any DuckDB
   thread, with or without the GIL.

   Main interpreter only, like _direct. Spec:
   https://arrow.apache.org/docs/format/CDataInterface.html
*/
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdatomic.h>
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
    int readonly;
} ArrowBuffer;

static int
ArrowBuffer_getbuffer(ArrowBuffer *self, Py_buffer *view, int flags)
{
    /* Inputs are read-only: a UDF must not write into DuckDB's input. */
    return PyBuffer_FillInfo(view, (PyObject *)self, self->data, self->size, self->readonly, flags);
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
    {Py_tp_doc, "One buffer of an imported Arrow array, or of an OutputBlock."},
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
    PyTypeObject *block_type;
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
new_view(PyTypeObject *buffer_type, PyObject *owner, const void *data, int64_t size, int readonly)
{
    ArrowBuffer *buffer = PyObject_New(ArrowBuffer, buffer_type);
    if (buffer == NULL) {
        return NULL;
    }
    buffer->owner = Py_NewRef(owner);
    buffer->data = (void *)data;
    buffer->size = (Py_ssize_t)size;
    buffer->readonly = readonly;
    PyObject *view = PyMemoryView_FromObject((PyObject *)buffer);
    Py_DECREF(buffer);
    return view;
}

static PyObject *
buffer_view(Walk *walk, const void *data, int64_t size)
{
    if (data == NULL) {
        Py_RETURN_NONE;
    }
    return new_view(walk->buffer_type, walk->owner, data, size, 1);
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


/* ---- results: one block of buffers, exported as an ArrowArray ------------- */

#define ALIGNMENT 64 /* Arrow's recommended buffer alignment */

typedef struct {
    atomic_long refs; /* the OutputBlock object, plus each exported array */
    void *data;
} Block;

static void
block_release(Block *block)
{
    if (atomic_fetch_sub(&block->refs, 1) == 1) {
        free(block->data);
        free(block);
    }
}

typedef struct {
    PyObject_HEAD
    Block *block;
    PyObject *capacities; /* tuple of ints, one per buffer, depth first */
    Py_ssize_t *starts;
} OutputBlock;

static PyObject *
OutputBlock_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    PyObject *sizes;
    if (!PyArg_ParseTuple(args, "O:OutputBlock", &sizes)) {
        return NULL;
    }
    PyObject *capacities = PySequence_Tuple(sizes);
    if (capacities == NULL) {
        return NULL;
    }
    Py_ssize_t count = PyTuple_GET_SIZE(capacities);
    Py_ssize_t *starts = PyMem_Malloc(sizeof(Py_ssize_t) * (count ? count : 1));
    Block *block = malloc(sizeof(Block));
    OutputBlock *self = NULL;
    size_t end = 0;
    if (starts == NULL || block == NULL) {
        PyErr_NoMemory();
        goto error;
    }
    block->data = NULL;
    atomic_init(&block->refs, 1);
    for (Py_ssize_t index = 0; index < count; index++) {
        Py_ssize_t size = PyLong_AsSsize_t(PyTuple_GET_ITEM(capacities, index));
        if (size < 0) {
            if (!PyErr_Occurred()) {
                PyErr_SetString(PyExc_ValueError, "buffer sizes must not be negative");
            }
            goto error;
        }
        starts[index] = (Py_ssize_t)end;
        end += ((size_t)size + ALIGNMENT - 1) / ALIGNMENT * ALIGNMENT;
    }
    if (posix_memalign(&block->data, ALIGNMENT, end ? end : ALIGNMENT) != 0) {
        block->data = NULL;
        PyErr_NoMemory();
        goto error;
    }
    self = (OutputBlock *)type->tp_alloc(type, 0);
    if (self == NULL) {
        goto error;
    }
    self->block = block;
    self->capacities = capacities;
    self->starts = starts;
    return (PyObject *)self;
error:
    if (block != NULL) {
        free(block->data);
        free(block);
    }
    PyMem_Free(starts);
    Py_DECREF(capacities);
    return NULL;
}

static void
OutputBlock_dealloc(OutputBlock *self)
{
    PyTypeObject *type = Py_TYPE(self);
    block_release(self->block);
    Py_DECREF(self->capacities);
    PyMem_Free(self->starts);
    type->tp_free(self);
    Py_DECREF(type);
}

static PyObject *
OutputBlock_views(OutputBlock *self, PyObject *Py_UNUSED(ignored))
{
    ModuleState *state = PyType_GetModuleState(Py_TYPE(self));
    if (state == NULL) {
        return NULL;
    }
    Py_ssize_t count = PyTuple_GET_SIZE(self->capacities);
    PyObject *views = PyTuple_New(count);
    if (views == NULL) {
        return NULL;
    }
    for (Py_ssize_t index = 0; index < count; index++) {
        Py_ssize_t size = PyLong_AsSsize_t(PyTuple_GET_ITEM(self->capacities, index));
        PyObject *view = new_view(state->buffer_type, (PyObject *)self, (char *)self->block->data + self->starts[index],
                                  size, 0);
        if (view == NULL) {
            Py_DECREF(views);
            return NULL;
        }
        PyTuple_SET_ITEM(views, index, view);
    }
    return views;
}

/* One allocation holds the exported tree: the structs, then the buffer
   pointers, then the child pointers. Only the root's release frees it;
   the children's (pyarrow never moves a child out) only mark them. */
typedef struct {
    Block *block;
} Exported;

static void
release_child(struct ArrowArray *array)
{
    array->release = NULL;
}

static void
release_root(struct ArrowArray *array)
{
    /* pyarrow releases its moved copy of the root; a failed import
       releases ours, which lies inside the allocation freed here. */
    Exported *exported = array->private_data;
    array->release = NULL;
    block_release(exported->block);
    free(exported);
}

static PyObject *
OutputBlock_export(OutputBlock *self, PyObject *args)
{
    PyObject *plan, *shapes;
    long long length, null_count;
    if (!PyArg_ParseTuple(args, "O!LLO!:export", &PyTuple_Type, &plan, &length, &null_count, &PyTuple_Type,
                          &shapes)) {
        return NULL;
    }
    /* plan: (buffer count, child count) of every node, depth first. */
    Py_ssize_t nodes = PyTuple_GET_SIZE(plan) / 2, buffers = 0, children = 0;
    for (Py_ssize_t node = 0; node < nodes; node++) {
        buffers += PyLong_AsSsize_t(PyTuple_GET_ITEM(plan, 2 * node));
        children += PyLong_AsSsize_t(PyTuple_GET_ITEM(plan, 2 * node + 1));
    }
    if (PyErr_Occurred()) {
        return NULL;
    }
    if (nodes < 1 || buffers != PyTuple_GET_SIZE(self->capacities) || children != nodes - 1
        || PyTuple_GET_SIZE(shapes) != 2 * (nodes - 1)) {
        PyErr_SetString(PyExc_ValueError, "the plan does not match the block's buffers or the shapes");
        return NULL;
    }
    size_t bytes = sizeof(Exported) + sizeof(struct ArrowArray) * nodes + sizeof(void *) * (buffers + children);
    Exported *exported = calloc(1, bytes);
    if (exported == NULL) {
        return PyErr_NoMemory();
    }
    struct ArrowArray *arrays = (struct ArrowArray *)(exported + 1);
    const void **buffer_slots = (const void **)(arrays + nodes);
    struct ArrowArray **child_slots = (struct ArrowArray **)(buffer_slots + buffers);
    /* Nodes are depth first: a node's children are the next subtrees. A
       stack of (node, children still to attach) links them. */
    Py_ssize_t stack[64], depth = 0, buffer = 0, child = 0;
    for (Py_ssize_t node = 0; node < nodes; node++) {
        struct ArrowArray *array = &arrays[node];
        array->n_buffers = PyLong_AsSsize_t(PyTuple_GET_ITEM(plan, 2 * node));
        array->n_children = PyLong_AsSsize_t(PyTuple_GET_ITEM(plan, 2 * node + 1));
        if (node == 0) {
            array->length = length;
            array->null_count = null_count;
        }
        else {
            array->length = PyLong_AsLongLong(PyTuple_GET_ITEM(shapes, 2 * (node - 1)));
            array->null_count = PyLong_AsLongLong(PyTuple_GET_ITEM(shapes, 2 * (node - 1) + 1));
            /* attach to the parent on top of the stack */
            while (depth > 0 && arrays[stack[depth - 1]].n_children == 0) {
                depth--;
            }
            if (depth == 0) {
                free(exported);
                PyErr_SetString(PyExc_ValueError, "the plan is not a tree");
                return NULL;
            }
            struct ArrowArray *parent = &arrays[stack[depth - 1]];
            parent->children[parent->n_children - 1] = array; /* filled back to front, reversed below */
            parent->n_children--;
        }
        array->buffers = buffer_slots + buffer;
        for (int64_t index = 0; index < array->n_buffers; index++, buffer++) {
            buffer_slots[buffer] = (char *)self->block->data + self->starts[buffer];
        }
        if (array->null_count == 0 && array->n_buffers > 0) {
            buffer_slots[buffer - array->n_buffers] = NULL; /* no validity without NULLs */
        }
        array->children = array->n_children ? child_slots + child : NULL;
        child += array->n_children;
        array->release = node == 0 ? release_root : release_child;
        if (array->n_children > 0) {
            if (depth == (Py_ssize_t)(sizeof(stack) / sizeof(stack[0]))) {
                free(exported);
                PyErr_SetString(PyExc_ValueError, "the result type is nested too deeply");
                return NULL;
            }
            stack[depth++] = node;
        }
    }
    if (PyErr_Occurred()) {
        free(exported);
        return NULL;
    }
    /* n_children counted down while attaching: restore, and put the
       children (attached last first) back in order. */
    for (Py_ssize_t node = 0; node < nodes; node++) {
        Py_ssize_t count = PyLong_AsSsize_t(PyTuple_GET_ITEM(plan, 2 * node + 1));
        struct ArrowArray *array = &arrays[node];
        array->n_children = count;
        for (Py_ssize_t low = 0, high = count - 1; low < high; low++, high--) {
            struct ArrowArray *swap = array->children[low];
            array->children[low] = array->children[high];
            array->children[high] = swap;
        }
    }
    exported->block = self->block;
    atomic_fetch_add(&self->block->refs, 1);
    arrays[0].private_data = exported;
    return PyLong_FromVoidPtr(&arrays[0]);
}

static PyObject *
OutputBlock_get_capacities(OutputBlock *self, void *Py_UNUSED(closure))
{
    return Py_NewRef(self->capacities);
}

static PyMethodDef OutputBlock_methods[] = {
    {"views", (PyCFunction)OutputBlock_views, METH_NOARGS,
     "views()\n--\n\nReturn a writable memoryview of every buffer, depth first, validity first in each node."},
    {"export", (PyCFunction)OutputBlock_export, METH_VARARGS,
     "export(plan, length, null_count, shapes)\n--\n\n"
     "Describe the written buffers as an ArrowArray and return its address, for pyarrow.Array._import_from_c.\n"
     "plan holds (buffer count, child count) of every node, depth first; shapes (length, null count) of every\n"
     "node below the root. A node's validity is left out where its null count is 0."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef OutputBlock_getset[] = {
    {"capacities", (getter)OutputBlock_get_capacities, NULL, "Bytes of every buffer, depth first.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot OutputBlock_slots[] = {
    {Py_tp_doc, "OutputBlock(capacities)\n--\n\nOne aligned allocation holding result buffers of these sizes."},
    {Py_tp_new, OutputBlock_new},
    {Py_tp_dealloc, OutputBlock_dealloc},
    {Py_tp_methods, OutputBlock_methods},
    {Py_tp_getset, OutputBlock_getset},
    {0, NULL},
};

static PyType_Spec OutputBlock_spec = {
    .name = "duckdb_subinterp._arrowc.OutputBlock",
    .basicsize = sizeof(OutputBlock),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = OutputBlock_slots,
};

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
    state->block_type = (PyTypeObject *)PyType_FromModuleAndSpec(module, &OutputBlock_spec, NULL);
    if (state->buffer_type == NULL || state->block_type == NULL) {
        return -1;
    }
    return PyModule_AddObjectRef(module, "OutputBlock", (PyObject *)state->block_type);
}

static int
module_traverse(PyObject *module, visitproc visit, void *arg)
{
    Py_VISIT(((ModuleState *)PyModule_GetState(module))->buffer_type);
    Py_VISIT(((ModuleState *)PyModule_GetState(module))->block_type);
    return 0;
}

static int
module_clear(PyObject *module)
{
    Py_CLEAR(((ModuleState *)PyModule_GetState(module))->buffer_type);
    Py_CLEAR(((ModuleState *)PyModule_GetState(module))->block_type);
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
    .m_doc = "Read Arrow arguments into memoryviews and build results, through the C data interface.",
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
