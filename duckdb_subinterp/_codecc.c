/* The codec's hot paths in C, for every interpreter: decode argument columns,
   call a native UDF once per row, encode its results.

   Runs where _codec.py runs: inside the per-GIL interpreters and the worker
   processes (and the main interpreter, for the inline backend's vectorized
   UDFs). So, like CPython's Modules/xxlimited.c and _json.c: multi-phase
   init, every Python object it holds in the module's state (one per
   interpreter), no static types, and Py_mod_multiple_interpreters set to
   per-interpreter-GIL support.

   It is an accelerator, never a second definition of the types: _codec.py
   is. decode_column and encode_column handle the common layouts and exact
   value types (see the table in _codec.py) and return NotImplemented for
   anything else: another kind, a value of another type, a value out of
   range, a buffer shorter than it should be, any error. The caller then
   runs _codec.py's function on the same column, which gives today's result
   or today's error message. call_per_row is _runtime.call_per_row's loop;
   call_numbers is that loop for a native UDF of numbers, fused with the
   decode before it and the encode after it (Runtime.run_row_numbers).

   Measured on 2048-row batches (bench/codec.py, main interpreter, a noisy
   2-core machine): VARCHAR decode 7x (ASCII) to 14x (UTF-8) the pure-Python
   codec's rows/s and 1.3x to 3x pyarrow's to_pylist; the runtime of a native
   identity UDF on BIGINT ~210 against ~500 us a batch.

   C API outside the limited API (so no abi3 build for now): the datetime
   C API (its capsule, the PyDateTime_GET_* / PyDateTime_DATE_GET_* /
   PyDateTime_TIME_GET_* field macros), PyList_GET_ITEM / PyList_SET_ITEM /
   PyList_GET_SIZE, PyTuple_GET_ITEM / PyTuple_GET_SIZE,
   PySequence_Fast_ITEMS, PyUnicode_New / PyUnicode_DATA / PyUnicode_KIND /
   PyUnicode_WRITE / PyUnicode_READ_CHAR / PyUnicode_IS_COMPACT_ASCII /
   PyUnicode_GET_LENGTH, PyBytes_AS_STRING / PyBytes_GET_SIZE,
   PyFloat_AS_DOUBLE, Py_BEGIN_CRITICAL_SECTION, PyUnstable_Long_IsCompact /
   PyUnstable_Long_CompactValue. Each but the datetime API
   has a limited-API function that costs a call (or a copy) per value; the
   datetime types would have to be called like Python classes.
*/
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <datetime.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

typedef struct {
    PyObject *datetime_module; /* keeps the C API below alive */
    PyDateTime_CAPI *datetime_api;
    PyObject *date_max, *date_min, *datetime_max, *datetime_min;
} CodecState;

static inline CodecState *
state_of(PyObject *module)
{
    return (CodecState *)PyModule_GetState(module);
}

/* ---- calendar (proleptic Gregorian, any year; H. Hinnant's algorithms) --- */

#define MICROS_PER_DAY INT64_C(86400000000)
/* Python's date range as days from 1970-01-01: 0001-01-01 .. 9999-12-31. */
#define MIN_DAY INT64_C(-719162)
#define MAX_DAY INT64_C(2932896)
#define MIN_MICROS (MIN_DAY * MICROS_PER_DAY)
#define MAX_MICROS ((MAX_DAY + 1) * MICROS_PER_DAY - 1)

static void
civil_from_days(int64_t days, int *year, int *month, int *day)
{
    int64_t shifted = days + 719468;
    int64_t era = (shifted >= 0 ? shifted : shifted - 146096) / 146097;
    int64_t day_of_era = shifted - era * 146097;
    int64_t year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36524 - day_of_era / 146096) / 365;
    int64_t day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    int64_t month_index = (5 * day_of_year + 2) / 153;
    *day = (int)(day_of_year - (153 * month_index + 2) / 5 + 1);
    *month = (int)(month_index < 10 ? month_index + 3 : month_index - 9);
    *year = (int)(year_of_era + era * 400 + (*month <= 2));
}

static int64_t
days_from_civil(int64_t year, int month, int day)
{
    year -= month <= 2;
    int64_t era = (year >= 0 ? year : year - 399) / 400;
    int64_t year_of_era = year - era * 400;
    int64_t day_of_year = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1;
    int64_t day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    return era * 146097 + day_of_era - 719468;
}

static inline int64_t
floor_div(int64_t value, int64_t divisor)
{
    int64_t quotient = value / divisor;
    return (value % divisor != 0 && value < 0) ? quotient - 1 : quotient;
}

/* ---- reading a column tuple: (offset, validity, *buffers) --------------- */

/* The outcome of a conversion: done, or "let _codec.py do this column". */
#define DONE 0
#define FALL_BACK 1

typedef struct {
    Py_buffer view;
    int held;
} Bytes;

/* View `object` as bytes; None gives an empty, unheld view. FALL_BACK on anything else. */
static int
bytes_of(PyObject *object, Bytes *bytes)
{
    bytes->held = 0;
    bytes->view.buf = NULL;
    bytes->view.len = 0;
    if (object == Py_None) {
        return DONE;
    }
    if (PyObject_GetBuffer(object, &bytes->view, PyBUF_SIMPLE) < 0) {
        PyErr_Clear();
        return FALL_BACK;
    }
    bytes->held = 1;
    return DONE;
}

static void
release(Bytes *bytes)
{
    if (bytes->held) {
        PyBuffer_Release(&bytes->view);
        bytes->held = 0;
    }
}

static inline int
bit_at(const uint8_t *bits, Py_ssize_t index)
{
    return (bits[index >> 3] >> (index & 7)) & 1;
}

/* Element sizes and readers of the typecodes _codec.py casts buffers to. */
static Py_ssize_t
typecode_size(char code)
{
    switch (code) {
    case 'b': case 'B': return 1;
    case 'h': case 'H': return 2;
    case 'i': case 'I': case 'f': return 4;
    case 'q': case 'Q': case 'd': return 8;
    default: return 0;
    }
}

/* The Python value memoryview.cast(code)[i] gives for the element at `raw`. */
static PyObject *
number_at(char code, const char *raw)
{
    switch (code) {
    case 'b': { int8_t v; memcpy(&v, raw, 1); return PyLong_FromLong(v); }
    case 'h': { int16_t v; memcpy(&v, raw, 2); return PyLong_FromLong(v); }
    case 'i': { int32_t v; memcpy(&v, raw, 4); return PyLong_FromLong(v); }
    case 'q': { int64_t v; memcpy(&v, raw, 8); return PyLong_FromLongLong(v); }
    case 'B': { uint8_t v; memcpy(&v, raw, 1); return PyLong_FromLong(v); }
    case 'H': { uint16_t v; memcpy(&v, raw, 2); return PyLong_FromLong(v); }
    case 'I': { uint32_t v; memcpy(&v, raw, 4); return PyLong_FromUnsignedLong(v); }
    case 'Q': { uint64_t v; memcpy(&v, raw, 8); return PyLong_FromUnsignedLongLong(v); }
    case 'f': { float v; memcpy(&v, raw, 4); return PyFloat_FromDouble(v); }
    case 'd': { double v; memcpy(&v, raw, 8); return PyFloat_FromDouble(v); }
    default: PyErr_SetString(PyExc_SystemError, "unknown typecode"); return NULL;
    }
}

/* A one-character str item of the descriptor, else 0. */
static char
code_item(PyObject *descriptor, Py_ssize_t index)
{
    if (PyTuple_GET_SIZE(descriptor) <= index) {
        return 0;
    }
    PyObject *item = PyTuple_GET_ITEM(descriptor, index);
    if (!PyUnicode_Check(item) || PyUnicode_GET_LENGTH(item) != 1) {
        return 0;
    }
    Py_UCS4 code = PyUnicode_READ_CHAR(item, 0);
    return code < 128 ? (char)code : 0;
}

static int
kind_is(PyObject *kind, const char *name)
{
    return PyUnicode_CompareWithASCIIString(kind, name) == 0;
}

/* A naive timestamp column's unit against microseconds: > 0, microseconds
   per tick (us 1, ms 1000, s 1000000); < 0, ticks per microsecond (ns
   -1000); 0 for any other kind, a zoned timestamp or an unknown unit. */
static int64_t
naive_timestamp_multiplier(PyObject *kind, PyObject *descriptor)
{
    if (!kind_is(kind, "timestamp") || PyTuple_GET_SIZE(descriptor) < 3 || PyTuple_GET_ITEM(descriptor, 2) != Py_False
        || !PyUnicode_Check(PyTuple_GET_ITEM(descriptor, 1))) {
        return 0;
    }
    PyObject *unit = PyTuple_GET_ITEM(descriptor, 1);
    return kind_is(unit, "us") ? 1 : kind_is(unit, "ms") ? 1000 : kind_is(unit, "s") ? 1000000 : kind_is(unit, "ns") ? -1000 : 0;
}

/* ---- decoding ------------------------------------------------------------ */

/* One column being decoded: its offset, length, validity and first value buffer. */
typedef struct {
    Py_ssize_t offset, length;
    Bytes validity, data;
    int has_validity;
} Column;

static void
close_column(Column *column)
{
    release(&column->validity);
    release(&column->data);
}

/* Read (offset, validity, data, ...): `buffer_count` buffers, the first holding at least
   `elements` values of `width` bytes from the offset on (width 8 and elements 0: a bitmap
   of length bits). FALL_BACK where anything is missing or short. */
static int
open_column(PyObject *column, Py_ssize_t length, Py_ssize_t buffer_count, Py_ssize_t width, Py_ssize_t elements,
            Column *out)
{
    out->validity.held = out->data.held = 0;
    if (!PyTuple_Check(column) || PyTuple_GET_SIZE(column) != 2 + buffer_count) {
        return FALL_BACK;
    }
    out->offset = PyLong_AsSsize_t(PyTuple_GET_ITEM(column, 0));
    if (out->offset < 0) {
        PyErr_Clear();
        return FALL_BACK;
    }
    out->length = length;
    PyObject *validity = PyTuple_GET_ITEM(column, 1);
    out->has_validity = validity != Py_None;
    if (bytes_of(validity, &out->validity) != DONE
        || (out->has_validity && out->validity.view.len < (out->offset + length + 7) / 8)) {
        close_column(out);
        return FALL_BACK;
    }
    Py_ssize_t needed = elements ? (out->offset + elements) * width : (out->offset + length + 7) / 8;
    if (bytes_of(PyTuple_GET_ITEM(column, 2), &out->data) != DONE || !out->data.held || out->data.view.len < needed) {
        close_column(out);
        return FALL_BACK;
    }
    return DONE;
}

static inline int
is_valid(const Column *column, Py_ssize_t index)
{
    return !column->has_validity || bit_at(column->validity.view.buf, column->offset + index);
}

static inline const char *
element(const Column *column, Py_ssize_t index, Py_ssize_t width)
{
    return (const char *)column->data.view.buf + (column->offset + index) * width;
}

/* A converter makes the value of one valid slot: DONE with *out set, FALL_BACK where the
   value has no conversion here (outside datetime's range...), or -1 with an exception. */
typedef int (*Converter)(CodecState *, const Column *, Py_ssize_t, const void *, PyObject **);

static int
convert_number(CodecState *state, const Column *column, Py_ssize_t index, const void *context, PyObject **out)
{
    char code = *(const char *)context;
    *out = number_at(code, element(column, index, typecode_size(code)));
    return *out == NULL ? -1 : DONE;
}

static int
convert_bool(CodecState *state, const Column *column, Py_ssize_t index, const void *context, PyObject **out)
{
    *out = Py_NewRef(bit_at(column->data.view.buf, column->offset + index) ? Py_True : Py_False);
    return DONE;
}

static int
convert_date(CodecState *state, const Column *column, Py_ssize_t index, const void *context, PyObject **out)
{
    int32_t day;
    memcpy(&day, element(column, index, 4), 4);
    if (day >= MIN_DAY && day <= MAX_DAY) {
        int year, month, mday;
        civil_from_days(day, &year, &month, &mday);
        *out = state->datetime_api->Date_FromDate(year, month, mday, state->datetime_api->DateType);
        return *out == NULL ? -1 : DONE;
    }
    /* DuckDB's infinities; other days outside Python's range are DuckDB's text, made by _codec.py. */
    if (day == INT32_MAX || day == -INT32_MAX) {
        *out = Py_NewRef(day > 0 ? state->date_max : state->date_min);
        return DONE;
    }
    return FALL_BACK;
}

static int
convert_time(CodecState *state, const Column *column, Py_ssize_t index, const void *context, PyObject **out)
{
    int64_t micros;
    memcpy(&micros, element(column, index, 8), 8);
    if (micros < 0 || micros >= MICROS_PER_DAY) {
        return FALL_BACK; /* 24:00:00 is text, a negative time an error: _codec.py says which */
    }
    int64_t seconds = micros / 1000000;
    *out = state->datetime_api->Time_FromTime((int)(seconds / 3600), (int)(seconds / 60 % 60), (int)(seconds % 60),
                                              (int)(micros % 1000000), Py_None, state->datetime_api->TimeType);
    return *out == NULL ? -1 : DONE;
}

static int
convert_timestamp(CodecState *state, const Column *column, Py_ssize_t index, const void *context, PyObject **out)
{
    int64_t multiply = *(const int64_t *)context; /* > 0: ticks * multiply; < 0: ticks / -multiply */
    int64_t tick, micros;
    memcpy(&tick, element(column, index, 8), 8);
    int overflow = 0;
    if (multiply > 0) {
        overflow = __builtin_mul_overflow(tick, multiply, &micros);
    }
    else {
        micros = tick / -multiply; /* nanoseconds truncated toward zero, as DuckDB's own UDFs see them */
    }
    if (!overflow && micros >= MIN_MICROS && micros <= MAX_MICROS) {
        int64_t days = floor_div(micros, MICROS_PER_DAY);
        int64_t of_day = micros - days * MICROS_PER_DAY;
        int64_t seconds = of_day / 1000000;
        int year, month, mday;
        civil_from_days(days, &year, &month, &mday);
        *out = state->datetime_api->DateTime_FromDateAndTime(
            year, month, mday, (int)(seconds / 3600), (int)(seconds / 60 % 60), (int)(seconds % 60),
            (int)(of_day % 1000000), Py_None, state->datetime_api->DateTimeType);
        return *out == NULL ? -1 : DONE;
    }
    if (tick == INT64_MAX || tick == -INT64_MAX) {
        *out = Py_NewRef(tick > 0 ? state->datetime_max : state->datetime_min);
        return DONE;
    }
    return FALL_BACK; /* DuckDB's text of it, made by _codec.py */
}

/* A new list of convert(slot) for valid slots and None for NULL ones; NotImplemented on any FALL_BACK or error. */
static PyObject *
decode_each(CodecState *state, const Column *column, Converter convert, const void *context)
{
    PyObject *values = PyList_New(column->length);
    if (values == NULL) {
        PyErr_Clear();
        return Py_NewRef(Py_NotImplemented);
    }
    for (Py_ssize_t index = 0; index < column->length; index++) {
        PyObject *value = Py_None;
        if (!is_valid(column, index)) {
            Py_INCREF(value);
        }
        else if (convert(state, column, index, context, &value) != DONE) {
            PyErr_Clear();
            Py_DECREF(values);
            return Py_NewRef(Py_NotImplemented);
        }
        PyList_SET_ITEM(values, index, value);
    }
    return values;
}

static PyObject *
decode_fixed(CodecState *state, Py_ssize_t length, PyObject *column, Py_ssize_t width, Converter convert,
             const void *context)
{
    Column opened;
    if (open_column(column, length, 1, width, width ? length : 0, &opened) != DONE) {
        return Py_NewRef(Py_NotImplemented);
    }
    PyObject *values = decode_each(state, &opened, convert, context);
    close_column(&opened);
    return values;
}

static int
is_ascii(const unsigned char *text, Py_ssize_t size)
{
    Py_ssize_t index = 0;
    uint64_t high = 0;
    for (; index + 8 <= size; index += 8) {
        uint64_t word;
        memcpy(&word, text + index, 8);
        high |= word;
    }
    for (; index < size; index++) {
        high |= text[index];
    }
    return (high & UINT64_C(0x8080808080808080)) == 0;
}

/* Text up to this many bytes that is not ASCII is decoded here, longer text by PyUnicode_DecodeUTF8. */
#define SHORT_TEXT 256

static PyObject *
text_of(const char *start, Py_ssize_t size)
{
    if (is_ascii((const unsigned char *)start, size)) {
        /* A copy: cheaper than PyUnicode_DecodeUTF8's own ASCII path (see decode_variable). */
        PyObject *text = PyUnicode_New(size, 127);
        if (text != NULL && size) {
            memcpy(PyUnicode_DATA(text), start, size);
        }
        return text;
    }
    if (size > SHORT_TEXT) {
        return PyUnicode_DecodeUTF8(start, size, NULL);
    }
    /* PyUnicode_DecodeUTF8 widens its result as it meets wider characters, a reallocation
       each time; one pass into code points, then one allocation of the right width: 2-3x
       faster on short non-ASCII strings (2048 of ~12 characters: 31 against 11 M strings/s
       for 'héllo ✓ 123', 22 against 11 for Japanese). Strict UTF-8, as the codec's: anything
       else (surrogates, overlong forms, truncation) goes to PyUnicode_DecodeUTF8 for its error. */
    Py_UCS4 points[SHORT_TEXT];
    Py_ssize_t count = 0;
    Py_UCS4 widest = 0;
    const unsigned char *at = (const unsigned char *)start, *end = at + size;
    while (at < end) {
        unsigned int lead = at[0];
        Py_UCS4 point;
        if (lead < 0x80) {
            point = lead;
            at += 1;
        }
        else if (lead >= 0xC2 && lead <= 0xDF) {
            if (end - at < 2 || (at[1] & 0xC0) != 0x80) {
                goto strict;
            }
            point = ((lead & 0x1F) << 6) | (at[1] & 0x3F);
            at += 2;
        }
        else if (lead >= 0xE0 && lead <= 0xEF) {
            unsigned int low = lead == 0xE0 ? 0xA0 : 0x80, high = lead == 0xED ? 0x9F : 0xBF;
            if (end - at < 3 || at[1] < low || at[1] > high || (at[2] & 0xC0) != 0x80) {
                goto strict;
            }
            point = ((lead & 0x0F) << 12) | ((at[1] & 0x3F) << 6) | (at[2] & 0x3F);
            at += 3;
        }
        else if (lead >= 0xF0 && lead <= 0xF4) {
            unsigned int low = lead == 0xF0 ? 0x90 : 0x80, high = lead == 0xF4 ? 0x8F : 0xBF;
            if (end - at < 4 || at[1] < low || at[1] > high || (at[2] & 0xC0) != 0x80 || (at[3] & 0xC0) != 0x80) {
                goto strict;
            }
            point = ((lead & 0x07) << 18) | ((at[1] & 0x3F) << 12) | ((at[2] & 0x3F) << 6) | (at[3] & 0x3F);
            at += 4;
        }
        else {
            goto strict;
        }
        points[count++] = point;
        widest = point > widest ? point : widest;
    }
    PyObject *text = PyUnicode_New(count, widest);
    if (text == NULL) {
        return NULL;
    }
    int kind = PyUnicode_KIND(text);
    void *data = PyUnicode_DATA(text);
    for (Py_ssize_t index = 0; index < count; index++) {
        PyUnicode_WRITE(kind, data, index, points[index]);
    }
    return text;
strict:
    return PyUnicode_DecodeUTF8(start, size, NULL);
}

static inline int64_t
bound_at(const Column *offsets, Py_ssize_t index, Py_ssize_t width)
{
    if (width == 4) {
        int32_t narrow;
        memcpy(&narrow, element(offsets, index, 4), 4);
        return narrow;
    }
    int64_t wide;
    memcpy(&wide, element(offsets, index, 8), 8);
    return wide;
}

/* utf8 and binary: (offset, validity, offsets, data). _codec.py decodes every slot's bytes, NULLs included. */
static PyObject *
decode_variable(PyObject *descriptor, Py_ssize_t length, PyObject *column, int text)
{
    char offset_code = code_item(descriptor, 1);
    if (offset_code != 'i' && offset_code != 'q') {
        return Py_NewRef(Py_NotImplemented);
    }
    Py_ssize_t width = offset_code == 'i' ? 4 : 8;
    Column offsets;
    Bytes data = {.held = 0};
    PyObject *values = NULL;
    if (open_column(column, length, 2, width, length + 1, &offsets) != DONE) {
        return Py_NewRef(Py_NotImplemented);
    }
    if (bytes_of(PyTuple_GET_ITEM(column, 3), &data) != DONE) {
        goto fall_back;
    }
    /* Offsets must rise and stay inside the data; anything else is _codec.py's to judge. */
    int64_t previous = bound_at(&offsets, 0, width);
    if (previous < 0) {
        goto fall_back;
    }
    for (Py_ssize_t index = 1; index <= length; index++) {
        int64_t bound = bound_at(&offsets, index, width);
        if (bound < previous) {
            goto fall_back;
        }
        previous = bound;
    }
    if (previous > data.view.len) {
        goto fall_back;
    }
    values = PyList_New(length);
    if (values == NULL) {
        goto fall_back;
    }
    const char *raw = data.view.buf;
    int64_t start = bound_at(&offsets, 0, width);
    /* One check of the whole batch first: ASCII text (the common case) then skips the per-value one,
       and a copy into a new str beats PyUnicode_DecodeUTF8 (43 against 34 M strings/s of ~20 bytes). */
    int all_ascii = text && is_ascii((const unsigned char *)raw + start, previous - start);
    for (Py_ssize_t index = 0; index < length; index++) {
        int64_t end = bound_at(&offsets, index + 1, width);
        PyObject *value;
        if (is_valid(&offsets, index)) {
            if (all_ascii) {
                value = PyUnicode_New(end - start, 127);
                if (value != NULL) {
                    memcpy(PyUnicode_DATA(value), raw + start, end - start);
                }
            }
            else {
                value = text ? text_of(raw + start, end - start) : PyBytes_FromStringAndSize(raw + start, end - start);
            }
            if (value == NULL) {
                goto fall_back; /* invalid UTF-8: _codec.py raises its own error */
            }
        }
        else if (text && end > start && !is_ascii((const unsigned char *)raw + start, end - start)) {
            goto fall_back; /* a NULL slot's bytes, which _codec.py decodes too and may refuse */
        }
        else {
            value = Py_NewRef(Py_None);
        }
        PyList_SET_ITEM(values, index, value);
        start = end;
    }
    release(&data);
    close_column(&offsets);
    return values;
fall_back:
    PyErr_Clear();
    Py_XDECREF(values);
    release(&data);
    close_column(&offsets);
    return Py_NewRef(Py_NotImplemented);
}

static PyObject *
decode_column(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "decode_column(descriptor, length, column) takes 3 arguments");
        return NULL;
    }
    PyObject *descriptor = args[0], *column = args[2];
    Py_ssize_t length = PyLong_AsSsize_t(args[1]);
    if (length < 0 || !PyTuple_Check(descriptor) || PyTuple_GET_SIZE(descriptor) < 1
        || !PyUnicode_Check(PyTuple_GET_ITEM(descriptor, 0))) {
        PyErr_Clear();
        return Py_NewRef(Py_NotImplemented);
    }
    if (length == 0) {
        return PyList_New(0); /* empty children may come without buffers at all */
    }
    CodecState *state = state_of(module);
    PyObject *kind = PyTuple_GET_ITEM(descriptor, 0);
    if (kind_is(kind, "utf8")) {
        return decode_variable(descriptor, length, column, 1);
    }
    if (kind_is(kind, "number")) {
        char code = code_item(descriptor, 1);
        Py_ssize_t size = typecode_size(code);
        /* Without NULLs _codec.py gives a zero-copy memoryview, which stays its job. */
        if (size == 0 || !PyTuple_Check(column) || PyTuple_GET_SIZE(column) < 2
            || PyTuple_GET_ITEM(column, 1) == Py_None) {
            return Py_NewRef(Py_NotImplemented);
        }
        return decode_fixed(state, length, column, size, convert_number, &code);
    }
    if (kind_is(kind, "binary")) {
        return decode_variable(descriptor, length, column, 0);
    }
    if (kind_is(kind, "bool")) {
        return decode_fixed(state, length, column, 0, convert_bool, NULL);
    }
    if (kind_is(kind, "date32")) {
        return decode_fixed(state, length, column, 4, convert_date, NULL);
    }
    if (kind_is(kind, "time64")) {
        return decode_fixed(state, length, column, 8, convert_time, NULL);
    }
    /* > 0: ticks * multiply; < 0: ticks / -multiply */
    int64_t multiply = naive_timestamp_multiplier(kind, descriptor);
    if (multiply != 0) {
        return decode_fixed(state, length, column, 8, convert_timestamp, &multiply);
    }
    return Py_NewRef(Py_NotImplemented);
}

/* ---- encoding ------------------------------------------------------------ */

/* A result buffer being filled: a bytes object of known size. */
static PyObject *
new_bytes(Py_ssize_t size, char **data)
{
    PyObject *bytes = PyBytes_FromStringAndSize(NULL, size);
    if (bytes != NULL) {
        *data = PyBytes_AS_STRING(bytes);
    }
    return bytes;
}

/* The validity bitmap of rows whose `nulls` flag is 0; None when there are no NULLs. */
static PyObject *
validity_of(const uint8_t *nulls, Py_ssize_t length, Py_ssize_t null_count)
{
    if (null_count == 0) {
        return Py_NewRef(Py_None);
    }
    char *bits = NULL;
    PyObject *bitmap = new_bytes((length + 7) / 8, &bits);
    if (bitmap == NULL) {
        return NULL;
    }
    memset(bits, 0, (length + 7) / 8);
    for (Py_ssize_t index = 0; index < length; index++) {
        if (!nulls[index]) {
            bits[index >> 3] |= (char)(1 << (index & 7));
        }
    }
    return bitmap;
}

/* Return (null_count, validity bytes or None, [first, second]) (second may be NULL: one buffer), taking the
   references given; NULL if one of them is NULL. */
static PyObject *
encoded(Py_ssize_t null_count, const uint8_t *nulls, Py_ssize_t length, PyObject *first, PyObject *second,
        int buffer_count)
{
    PyObject *validity = NULL, *buffers = NULL;
    if (first == NULL || (buffer_count == 2 && second == NULL)) {
        goto fail;
    }
    validity = validity_of(nulls, length, null_count);
    buffers = PyList_New(buffer_count);
    if (validity == NULL || buffers == NULL) {
        goto fail;
    }
    PyList_SET_ITEM(buffers, 0, first);
    if (buffer_count == 2) {
        PyList_SET_ITEM(buffers, 1, second);
    }
    return Py_BuildValue("(nNN)", null_count, validity, buffers); /* which releases them on failure */
fail:
    /* Before the list took its items. */
    Py_XDECREF(first);
    Py_XDECREF(second);
    Py_XDECREF(buffers);
    Py_XDECREF(validity);
    return NULL;
}

/* Per-row NULL flags, one byte a row (freed by the caller). */
static uint8_t *
null_flags(Py_ssize_t length)
{
    uint8_t *flags = PyMem_Calloc(length ? length : 1, 1);
    if (flags == NULL) {
        PyErr_NoMemory();
    }
    return flags;
}

static int
int_in_range(PyObject *value, char code, char *out)
{
    long long wide;
    if (PyUnstable_Long_IsCompact((PyLongObject *)value)) {
        /* One digit (|value| < 2**30), read in place: the encode of a 2048-row BIGINT result
           took ~100k instructions through PyLong_AsLongLongAndOverflow, ~35k this way. */
        wide = PyUnstable_Long_CompactValue((PyLongObject *)value);
        if (code == 'Q') {
            if (wide < 0) {
                return FALL_BACK;
            }
            uint64_t v = (uint64_t)wide;
            memcpy(out, &v, 8);
            return DONE;
        }
        goto store;
    }
    if (code == 'Q') {
        unsigned long long wide = PyLong_AsUnsignedLongLong(value);
        if (wide == (unsigned long long)-1 && PyErr_Occurred()) {
            PyErr_Clear();
            return FALL_BACK;
        }
        memcpy(out, &wide, 8);
        return DONE;
    }
    int overflow;
    wide = PyLong_AsLongLongAndOverflow(value, &overflow);
    if (overflow || (wide == -1 && PyErr_Occurred())) {
        PyErr_Clear();
        return FALL_BACK;
    }
store:
    switch (code) {
    case 'b': if (wide < INT8_MIN || wide > INT8_MAX) return FALL_BACK; { int8_t v = (int8_t)wide; memcpy(out, &v, 1); } break;
    case 'h': if (wide < INT16_MIN || wide > INT16_MAX) return FALL_BACK; { int16_t v = (int16_t)wide; memcpy(out, &v, 2); } break;
    case 'i': if (wide < INT32_MIN || wide > INT32_MAX) return FALL_BACK; { int32_t v = (int32_t)wide; memcpy(out, &v, 4); } break;
    case 'q': { int64_t v = wide; memcpy(out, &v, 8); } break;
    case 'B': if (wide < 0 || wide > UINT8_MAX) return FALL_BACK; { uint8_t v = (uint8_t)wide; memcpy(out, &v, 1); } break;
    case 'H': if (wide < 0 || wide > UINT16_MAX) return FALL_BACK; { uint16_t v = (uint16_t)wide; memcpy(out, &v, 2); } break;
    case 'I': if (wide < 0 || wide > UINT32_MAX) return FALL_BACK; { uint32_t v = (uint32_t)wide; memcpy(out, &v, 4); } break;
    default: return FALL_BACK;
    }
    return DONE;
}

/* One result of a number type into `slot`: exact ints (no bool) in range, exact floats and ints for
   FLOAT/DOUBLE; NaN and None set *is_null (the slot zeroed). FALL_BACK, no error set, for anything else. */
static int
number_into(char code, PyObject *value, char *slot, int *is_null)
{
    *is_null = 0;
    if (code != 'f' && code != 'd') {
        if (PyLong_CheckExact(value)) {
            return int_in_range(value, code, slot);
        }
        if (value == Py_None) {
            *is_null = 1;
            memset(slot, 0, typecode_size(code));
            return DONE;
        }
        return FALL_BACK;
    }
    double number;
    if (PyFloat_CheckExact(value)) {
        number = PyFloat_AS_DOUBLE(value);
    }
    else if (PyLong_CheckExact(value)) {
        /* The ints _codec._FLOAT_INTS takes: those of a BIGINT or UBIGINT, which DuckDB's own UDFs
           convert as this does (correctly rounded); for FLOAT only up to 2**53, below which the
           double is exact and rounding it to a float rounds once. */
        int overflow;
        long long wide = PyLong_AsLongLongAndOverflow(value, &overflow);
        if (overflow > 0) {
            unsigned long long unsigned_wide = PyLong_AsUnsignedLongLong(value);
            if ((unsigned_wide == (unsigned long long)-1 && PyErr_Occurred()) || code == 'f') {
                PyErr_Clear();
                return FALL_BACK;
            }
            number = (double)unsigned_wide;
        }
        else if (overflow < 0 || (wide == -1 && PyErr_Occurred())) {
            PyErr_Clear();
            return FALL_BACK;
        }
        else if (code == 'f' && (wide > (INT64_C(1) << 53) || wide < -(INT64_C(1) << 53))) {
            return FALL_BACK;
        }
        else {
            number = (double)wide;
        }
    }
    else if (value == Py_None) {
        number = NAN;
    }
    else {
        return FALL_BACK;
    }
    if (isnan(number)) {
        /* DuckDB's own UDFs make NaN results NULL. */
        *is_null = 1;
        number = 0.0;
    }
    if (code == 'd') {
        memcpy(slot, &number, 8);
    }
    else {
        float narrow = (float)number;
        memcpy(slot, &narrow, 4);
    }
    return DONE;
}

/* Numbers: see number_into. */
static PyObject *
encode_number(char code, PyObject *values)
{
    Py_ssize_t size = typecode_size(code), length = PyList_GET_SIZE(values), null_count = 0;
    if (size == 0) {
        return Py_NewRef(Py_NotImplemented);
    }
    char *data = NULL;
    PyObject *buffer = new_bytes(length * size, &data);
    uint8_t *nulls = null_flags(length);
    if (buffer == NULL || nulls == NULL) {
        Py_XDECREF(buffer);
        PyMem_Free(nulls);
        return NULL;
    }
    for (Py_ssize_t index = 0; index < length; index++) {
        int is_null;
        if (number_into(code, PyList_GET_ITEM(values, index), data + index * size, &is_null) != DONE) {
            Py_DECREF(buffer);
            PyMem_Free(nulls);
            return Py_NewRef(Py_NotImplemented);
        }
        nulls[index] = (uint8_t)is_null;
        null_count += is_null;
    }
    PyObject *result = encoded(null_count, nulls, length, buffer, NULL, 1);
    PyMem_Free(nulls);
    return result;
}

static PyObject *
encode_bool(PyObject *values)
{
    Py_ssize_t length = PyList_GET_SIZE(values), null_count = 0;
    char *data = NULL;
    PyObject *buffer = new_bytes((length + 7) / 8, &data);
    uint8_t *nulls = null_flags(length);
    if (buffer == NULL || nulls == NULL) {
        Py_XDECREF(buffer);
        PyMem_Free(nulls);
        return NULL;
    }
    memset(data, 0, (length + 7) / 8);
    for (Py_ssize_t index = 0; index < length; index++) {
        PyObject *value = PyList_GET_ITEM(values, index);
        if (value == Py_True) {
            data[index >> 3] |= (char)(1 << (index & 7));
        }
        else if (value == Py_None) {
            nulls[index] = 1;
            null_count++;
        }
        else if (value != Py_False) {
            Py_DECREF(buffer);
            PyMem_Free(nulls);
            return Py_NewRef(Py_NotImplemented);
        }
    }
    PyObject *result = encoded(null_count, nulls, length, buffer, NULL, 1);
    PyMem_Free(nulls);
    return result;
}

/* utf8 (exact str) and binary (exact bytes): offsets and data. */
static PyObject *
encode_variable(char offset_code, PyObject *values, int text)
{
    if (offset_code != 'i' && offset_code != 'q') {
        return Py_NewRef(Py_NotImplemented);
    }
    Py_ssize_t length = PyList_GET_SIZE(values), null_count = 0, total = 0;
    Py_ssize_t width = offset_code == 'i' ? 4 : 8;
    int64_t limit = offset_code == 'i' ? INT32_MAX : INT64_MAX;
    uint8_t *nulls = null_flags(length);
    PyObject *bounds = NULL, *data = NULL;
    if (nulls == NULL) {
        return NULL;
    }
    /* First pass: types and sizes (and each non-ASCII str's UTF-8, which CPython caches in the str). */
    for (Py_ssize_t index = 0; index < length; index++) {
        PyObject *value = PyList_GET_ITEM(values, index);
        Py_ssize_t size;
        if (value == Py_None) {
            nulls[index] = 1;
            null_count++;
            continue;
        }
        if (text) {
            if (!PyUnicode_CheckExact(value)) {
                goto fall_back;
            }
            if (PyUnicode_IS_COMPACT_ASCII(value)) {
                size = PyUnicode_GET_LENGTH(value);
            }
            else if (PyUnicode_AsUTF8AndSize(value, &size) == NULL) {
                goto fall_back; /* a lone surrogate: _codec.py's error */
            }
        }
        else {
            if (!PyBytes_CheckExact(value)) {
                goto fall_back;
            }
            size = PyBytes_GET_SIZE(value);
        }
        total += size;
        if (total > limit) {
            goto fall_back;
        }
    }
    char *offsets = NULL, *bytes = NULL;
    bounds = new_bytes((length + 1) * width, &offsets);
    data = new_bytes(total, &bytes);
    if (bounds == NULL || data == NULL) {
        goto fail;
    }
    int64_t position = 0;
    for (Py_ssize_t index = 0; index <= length; index++) {
        if (width == 4) {
            int32_t narrow = (int32_t)position;
            memcpy(offsets + index * 4, &narrow, 4);
        }
        else {
            memcpy(offsets + index * 8, &position, 8);
        }
        if (index == length || nulls[index]) {
            continue;
        }
        PyObject *value = PyList_GET_ITEM(values, index);
        const char *source;
        Py_ssize_t size;
        if (!text) {
            source = PyBytes_AS_STRING(value);
            size = PyBytes_GET_SIZE(value);
        }
        else if (PyUnicode_IS_COMPACT_ASCII(value)) {
            source = PyUnicode_DATA(value);
            size = PyUnicode_GET_LENGTH(value);
        }
        else {
            source = PyUnicode_AsUTF8AndSize(value, &size); /* cached by the first pass */
            if (source == NULL) {
                goto fail;
            }
        }
        memcpy(bytes + position, source, size);
        position += size;
    }
    PyObject *result = encoded(null_count, nulls, length, bounds, data, 2);
    PyMem_Free(nulls);
    return result;
fall_back:
    PyErr_Clear();
    PyMem_Free(nulls);
    return Py_NewRef(Py_NotImplemented);
fail:
    Py_XDECREF(bounds);
    Py_XDECREF(data);
    PyMem_Free(nulls);
    return NULL;
}

/* date32, time64, timestamp (naive): int32 or int64 values computed by `convert`; FALL_BACK for any other value. */
typedef int (*ValueEncoder)(CodecState *, PyObject *, int64_t, int64_t *);

static int
date_days(CodecState *state, PyObject *value, int64_t unit, int64_t *out)
{
    /* A datetime is a date too: DuckDB's own UDFs keep its date part. */
    if (!Py_IS_TYPE(value, state->datetime_api->DateType) && !Py_IS_TYPE(value, state->datetime_api->DateTimeType)) {
        return FALL_BACK;
    }
    *out = days_from_civil(PyDateTime_GET_YEAR(value), PyDateTime_GET_MONTH(value), PyDateTime_GET_DAY(value));
    return DONE;
}

static int
time_micros(CodecState *state, PyObject *value, int64_t unit, int64_t *out)
{
    if (!Py_IS_TYPE(value, state->datetime_api->TimeType)) {
        return FALL_BACK;
    }
    *out = ((PyDateTime_TIME_GET_HOUR(value) * INT64_C(60) + PyDateTime_TIME_GET_MINUTE(value)) * 60
            + PyDateTime_TIME_GET_SECOND(value)) * 1000000 + PyDateTime_TIME_GET_MICROSECOND(value);
    return DONE;
}

static int
timestamp_ticks(CodecState *state, PyObject *value, int64_t multiply, int64_t *out)
{
    int64_t micros;
    if (Py_IS_TYPE(value, state->datetime_api->DateTimeType)) {
        /* The wall time, also of an aware datetime: DuckDB's own UDFs keep it for TIMESTAMP. */
        micros = days_from_civil(PyDateTime_GET_YEAR(value), PyDateTime_GET_MONTH(value), PyDateTime_GET_DAY(value))
                 * MICROS_PER_DAY
                 + ((PyDateTime_DATE_GET_HOUR(value) * INT64_C(60) + PyDateTime_DATE_GET_MINUTE(value)) * 60
                    + PyDateTime_DATE_GET_SECOND(value)) * 1000000
                 + PyDateTime_DATE_GET_MICROSECOND(value);
    }
    else if (Py_IS_TYPE(value, state->datetime_api->DateType)) {
        micros = days_from_civil(PyDateTime_GET_YEAR(value), PyDateTime_GET_MONTH(value), PyDateTime_GET_DAY(value))
                 * MICROS_PER_DAY;
    }
    else {
        return FALL_BACK;
    }
    if (multiply > 0) {
        *out = floor_div(micros, multiply);
        return DONE;
    }
    return __builtin_mul_overflow(micros, -multiply, out) ? FALL_BACK : DONE;
}

static PyObject *
encode_fixed(CodecState *state, PyObject *values, Py_ssize_t width, ValueEncoder convert, int64_t unit)
{
    Py_ssize_t length = PyList_GET_SIZE(values), null_count = 0;
    char *data = NULL;
    PyObject *buffer = new_bytes(length * width, &data);
    uint8_t *nulls = null_flags(length);
    if (buffer == NULL || nulls == NULL) {
        Py_XDECREF(buffer);
        PyMem_Free(nulls);
        return NULL;
    }
    for (Py_ssize_t index = 0; index < length; index++) {
        PyObject *value = PyList_GET_ITEM(values, index);
        int64_t number = 0;
        if (value == Py_None) {
            nulls[index] = 1;
            null_count++;
        }
        else if (convert(state, value, unit, &number) != DONE) {
            Py_DECREF(buffer);
            PyMem_Free(nulls);
            return Py_NewRef(Py_NotImplemented);
        }
        if (width == 4) {
            int32_t narrow = (int32_t)number;
            memcpy(data + index * 4, &narrow, 4);
        }
        else {
            memcpy(data + index * 8, &number, 8);
        }
    }
    PyObject *result = encoded(null_count, nulls, length, buffer, NULL, 1);
    PyMem_Free(nulls);
    return result;
}

static PyObject *
encode_list(CodecState *state, PyObject *descriptor, PyObject *values)
{
    PyObject *kind = PyTuple_GET_ITEM(descriptor, 0);
    if (kind_is(kind, "number")) {
        return encode_number(code_item(descriptor, 1), values);
    }
    if (kind_is(kind, "utf8")) {
        return encode_variable(code_item(descriptor, 1), values, 1);
    }
    if (kind_is(kind, "binary")) {
        return encode_variable(code_item(descriptor, 1), values, 0);
    }
    if (kind_is(kind, "bool")) {
        return encode_bool(values);
    }
    if (kind_is(kind, "date32")) {
        return encode_fixed(state, values, 4, date_days, 0);
    }
    if (kind_is(kind, "time64")) {
        return encode_fixed(state, values, 8, time_micros, 0);
    }
    /* > 0: micros // multiply (floor, as _codec.py); < 0: micros * -multiply */
    int64_t multiply = naive_timestamp_multiplier(kind, descriptor);
    if (multiply != 0) {
        return encode_fixed(state, values, 8, timestamp_ticks, multiply);
    }
    return Py_NewRef(Py_NotImplemented);
}

static PyObject *
encode_column(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "encode_column(descriptor, values) takes 2 arguments");
        return NULL;
    }
    PyObject *descriptor = args[0], *values = args[1], *result;
    /* Results of other sequence types (an array or memoryview passed through, a tuple) stay _codec.py's. */
    if (!PyList_CheckExact(values) || !PyTuple_Check(descriptor) || PyTuple_GET_SIZE(descriptor) < 1
        || !PyUnicode_Check(PyTuple_GET_ITEM(descriptor, 0))) {
        return Py_NewRef(Py_NotImplemented);
    }
    /* The list's items are read borrowed: on a free-threaded build no other thread may change it meanwhile. */
    Py_BEGIN_CRITICAL_SECTION(values);
    result = encode_list(state_of(module), descriptor, values);
    Py_END_CRITICAL_SECTION();
    return result;
}

/* ---- the per-row call loop of native UDFs -------------------------------- */

/* One argument column: a list or tuple's items, or a numbers memoryview's buffer. */
typedef struct {
    PyObject *sequence; /* a new reference: the list/tuple, or the memoryview */
    PyObject **items;   /* NULL for a memoryview */
    Py_buffer view;
    char code;
    Py_ssize_t size;
} Argument;

static int
open_argument(PyObject *object, Argument *argument)
{
    argument->items = NULL;
    argument->sequence = NULL;
    if (PyMemoryView_Check(object)) {
        /* Null-free numbers come as a memoryview of their typecode (_codec.fixed_values). */
        if (PyObject_GetBuffer(object, &argument->view, PyBUF_FORMAT | PyBUF_ND) == 0) {
            const char *format = argument->view.format;
            if (argument->view.ndim == 1 && format != NULL && format[0] != '\0' && format[1] == '\0'
                && typecode_size(format[0]) == argument->view.itemsize) {
                argument->code = format[0];
                argument->size = argument->view.shape[0];
                argument->sequence = Py_NewRef(object);
                return 0;
            }
            PyBuffer_Release(&argument->view);
        }
        else {
            PyErr_Clear();
        }
    }
    argument->sequence = PySequence_Fast(object, "an argument column is not a sequence");
    if (argument->sequence == NULL) {
        return -1;
    }
    argument->items = PySequence_Fast_ITEMS(argument->sequence);
    argument->size = PySequence_Fast_GET_SIZE(argument->sequence);
    return 0;
}

static void
close_argument(Argument *argument)
{
    if (argument->sequence == NULL) {
        return;
    }
    if (argument->items == NULL) {
        PyBuffer_Release(&argument->view);
    }
    Py_CLEAR(argument->sequence);
}

/* How the per-row loops (call_per_row, call_numbers) call the function on a row. */
typedef struct {
    PyObject *function, *caught;
    int skip_nulls, errors_to_null, check_none;
} RowCall;

/* Call the function on one row: None without a call for a row with a NULL argument (skip_nulls, DuckDB's
   default NULL handling), None for an exception of `caught` (errors_to_null: exception_handling=
   "return_null", not the function's None); the first row of all arguments given whose result is None goes
   to *bad_row (check_none). Return the result, or NULL with the exception set. */
static inline PyObject *
call_row(const RowCall *call, PyObject *const *row, Py_ssize_t count, int has_null, Py_ssize_t index,
         Py_ssize_t *bad_row)
{
    if (call->skip_nulls && has_null) {
        return Py_NewRef(Py_None);
    }
    PyObject *result = PyObject_Vectorcall(call->function, row, count, NULL);
    if (result == NULL) {
        if (!call->errors_to_null || !PyErr_ExceptionMatches(call->caught)) {
            return NULL;
        }
        PyErr_Clear();
        return Py_NewRef(Py_None);
    }
    if (result == Py_None && call->check_none && !has_null && *bad_row < 0) {
        *bad_row = index;
    }
    return result;
}

/* call_per_row(function, arguments, length, skip_nulls, errors_to_null, check_none, caught)
   -> (results, first_bad_row) */
static PyObject *
call_per_row(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 7) {
        PyErr_SetString(PyExc_TypeError, "call_per_row(function, arguments, length, skip_nulls, errors_to_null, "
                                         "check_none, caught) takes 7 arguments");
        return NULL;
    }
    PyObject *columns = args[1];
    Py_ssize_t length = PyLong_AsSsize_t(args[2]);
    if (length < 0 && PyErr_Occurred()) {
        return NULL;
    }
    RowCall call = {args[0], args[6], 0, 0, 0};
    if ((call.skip_nulls = PyObject_IsTrue(args[3])) < 0 || (call.errors_to_null = PyObject_IsTrue(args[4])) < 0
        || (call.check_none = PyObject_IsTrue(args[5])) < 0) {
        return NULL;
    }
    if (!PyList_CheckExact(columns)) {
        PyErr_SetString(PyExc_TypeError, "arguments must be a list");
        return NULL;
    }
    if (length < 0) {
        length = 0; /* as range(length) */
    }
    Py_ssize_t count = PyList_GET_SIZE(columns);
    Argument small_arguments[8];
    PyObject *small_row[8], *small_owned[8];
    Argument *arguments = small_arguments;
    PyObject **row = small_row, **owned = small_owned;
    PyObject *results = NULL;
    Py_ssize_t opened = 0, bad_row = -1;
    if (count > 8) {
        arguments = PyMem_Calloc(count, sizeof(Argument));
        row = PyMem_Calloc(count, sizeof(PyObject *));
        owned = PyMem_Calloc(count, sizeof(PyObject *));
        if (arguments == NULL || row == NULL || owned == NULL) {
            PyErr_NoMemory();
            goto done;
        }
    }
    /* As map() and zip() do: as many rows as the shortest column. */
    Py_ssize_t rows = length;
    for (; opened < count; opened++) {
        if (open_argument(PyList_GET_ITEM(columns, opened), &arguments[opened]) < 0) {
            goto done;
        }
        if (opened == 0 || arguments[opened].size < rows) {
            rows = arguments[opened].size;
        }
    }
    results = PyList_New(rows);
    if (results == NULL) {
        goto done;
    }
    for (Py_ssize_t index = 0; index < rows; index++) {
        int has_null = 0;
        for (Py_ssize_t column = 0; column < count; column++) {
            Argument *argument = &arguments[column];
            if (argument->items != NULL) {
                row[column] = argument->items[index];
                owned[column] = NULL;
                has_null |= row[column] == Py_None;
            }
            else {
                owned[column] = row[column] =
                    number_at(argument->code, (const char *)argument->view.buf + index * argument->view.itemsize);
                if (row[column] == NULL) {
                    for (Py_ssize_t made = 0; made < column; made++) {
                        Py_XDECREF(owned[made]);
                    }
                    Py_CLEAR(results);
                    goto done;
                }
            }
        }
        PyObject *result = call_row(&call, row, count, has_null, index, &bad_row);
        for (Py_ssize_t column = 0; column < count; column++) {
            Py_XDECREF(owned[column]);
        }
        if (result == NULL) {
            Py_CLEAR(results);
            goto done;
        }
        PyList_SET_ITEM(results, index, result);
    }
done:
    for (Py_ssize_t column = 0; column < opened; column++) {
        close_argument(&arguments[column]);
    }
    if (arguments != small_arguments) {
        PyMem_Free(arguments);
        PyMem_Free(row);
        PyMem_Free(owned);
    }
    if (results == NULL) {
        return NULL;
    }
    return Py_BuildValue("(Nn)", results, bad_row);
}

/* ---- the per-row loop of a native UDF of numbers, fused ----------------- */

/* One number argument column as Runtime.run receives it: (offset, validity bitmap or None, data). */
typedef struct {
    Bytes validity, data;
    Py_ssize_t offset, size;
    char code;
} NumberColumn;

/* Open `column` as numbers of `code` for `length` rows; FALL_BACK (no error) if it is not laid out so. */
static int
open_numbers(PyObject *column, PyObject *code, Py_ssize_t length, NumberColumn *numbers)
{
    numbers->validity.held = numbers->data.held = 0;
    if (!PyTuple_CheckExact(column) || PyTuple_GET_SIZE(column) != 3 || !PyUnicode_Check(code)
        || PyUnicode_GET_LENGTH(code) != 1 || PyUnicode_READ_CHAR(code, 0) >= 128) {
        return FALL_BACK;
    }
    numbers->code = (char)PyUnicode_READ_CHAR(code, 0);
    numbers->size = typecode_size(numbers->code);
    numbers->offset = PyLong_AsSsize_t(PyTuple_GET_ITEM(column, 0));
    if (numbers->offset < 0 || numbers->size == 0) {
        PyErr_Clear();
        return FALL_BACK;
    }
    if (bytes_of(PyTuple_GET_ITEM(column, 1), &numbers->validity) != DONE
        || bytes_of(PyTuple_GET_ITEM(column, 2), &numbers->data) != DONE
        || numbers->data.view.len < (numbers->offset + length) * numbers->size
        || (numbers->validity.held && numbers->validity.view.len * 8 < numbers->offset + length)) {
        release(&numbers->validity);
        release(&numbers->data);
        return FALL_BACK;
    }
    return DONE;
}

/* call_numbers(function, columns, codes, length, skip_nulls, errors_to_null, check_none, caught, result_code,
                validity_out, data_out) -> (null_count, first_bad_row, results) or NotImplemented */
static PyObject *
call_numbers(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 11) {
        PyErr_SetString(PyExc_TypeError, "call_numbers(function, columns, codes, length, skip_nulls, errors_to_null, "
                                         "check_none, caught, result_code, validity_out, data_out) takes 11 arguments");
        return NULL;
    }
    PyObject *columns = args[1], *codes = args[2];
    Py_ssize_t length = PyLong_AsSsize_t(args[3]);
    if (length < 0 && PyErr_Occurred()) {
        return NULL;
    }
    RowCall call = {args[0], args[7], 0, 0, 0};
    if ((call.skip_nulls = PyObject_IsTrue(args[4])) < 0 || (call.errors_to_null = PyObject_IsTrue(args[5])) < 0
        || (call.check_none = PyObject_IsTrue(args[6])) < 0) {
        return NULL;
    }
    /* The columns come as a tuple (this interpreter's, a per-GIL one's) or a list (a worker process's, an
       actor's): read once, before any call. */
    if (!(PyTuple_CheckExact(columns) || PyList_CheckExact(columns)) || !PyList_CheckExact(codes)
        || PySequence_Fast_GET_SIZE(columns) != PyList_GET_SIZE(codes) || PySequence_Fast_GET_SIZE(columns) > 8
        || length < 0 || !PyUnicode_Check(args[8]) || PyUnicode_GET_LENGTH(args[8]) != 1
        || PyUnicode_READ_CHAR(args[8], 0) >= 128) {
        return Py_NewRef(Py_NotImplemented);
    }
    char code = (char)PyUnicode_READ_CHAR(args[8], 0);
    Py_ssize_t size = typecode_size(code), count = PySequence_Fast_GET_SIZE(columns), opened = 0;
    NumberColumn numbers[8];
    PyObject *row[8], *results = NULL, *answer = NULL;
    Py_buffer validity_out, data_out;
    int have_validity = 0, have_data = 0, fall_back = 0;
    if (size == 0) {
        return Py_NewRef(Py_NotImplemented);
    }
    if (PyObject_GetBuffer(args[9], &validity_out, PyBUF_WRITABLE) == 0) {
        have_validity = 1;
    }
    if (have_validity && PyObject_GetBuffer(args[10], &data_out, PyBUF_WRITABLE) == 0) {
        have_data = 1;
    }
    PyErr_Clear();
    fall_back = !have_data || validity_out.len < (length + 7) / 8 || data_out.len < length * size;
    for (; !fall_back && opened < count; opened++) {
        if (open_numbers(PySequence_Fast_GET_ITEM(columns, opened), PyList_GET_ITEM(codes, opened), length,
                         &numbers[opened])
            != DONE) {
            fall_back = 1;
            break;
        }
    }
    if (fall_back) {
        answer = Py_NewRef(Py_NotImplemented);
        goto done;
    }
    /* Every result is kept, as the function returned it, until the end: the codec gets them all if one is
       left to it. */
    results = PyList_New(length);
    if (results == NULL) {
        goto done;
    }
    uint8_t *valid = validity_out.buf;
    char *data = data_out.buf;
    memset(valid, 0, (length + 7) / 8);
    Py_ssize_t null_count = 0, bad_row = -1;
    int left_to_codec = 0;
    for (Py_ssize_t index = 0; index < length; index++) {
        int has_null = 0, made = 0;
        for (Py_ssize_t column = 0; column < count; column++) {
            NumberColumn *argument = &numbers[column];
            Py_ssize_t at = argument->offset + index;
            if (argument->validity.held && !bit_at(argument->validity.view.buf, at)) {
                row[column] = Py_None;
                has_null = 1;
                continue;
            }
            row[column] = number_at(argument->code, (const char *)argument->data.view.buf + at * argument->size);
            if (row[column] == NULL) {
                goto failed_row;
            }
            made = column + 1;
        }
        PyObject *result = call_row(&call, row, count, has_null, index, &bad_row);
        if (result == NULL) {
            goto failed_row;
        }
        for (Py_ssize_t column = 0; column < made; column++) {
            if (row[column] != Py_None) {
                Py_DECREF(row[column]);
            }
        }
        PyList_SET_ITEM(results, index, result);
        if (left_to_codec) {
            continue;
        }
        int is_null = 0;
        if (number_into(code, result, data + index * size, &is_null) != DONE) {
            left_to_codec = 1; /* a result the codec decides on: it gets the list */
            continue;
        }
        if (is_null) {
            null_count++;
        }
        else {
            valid[index >> 3] |= (uint8_t)(1 << (index & 7));
        }
        continue;
    failed_row:
        for (Py_ssize_t column = 0; column < made; column++) {
            if (row[column] != Py_None) {
                Py_DECREF(row[column]);
            }
        }
        goto done;
    }
    answer = Py_BuildValue("(nnO)", null_count, bad_row, left_to_codec ? results : Py_None);
done:
    Py_XDECREF(results); /* unset items of a list cut short are NULL, which it skips */
    for (Py_ssize_t column = 0; column < opened; column++) {
        release(&numbers[column].validity);
        release(&numbers[column].data);
    }
    if (have_validity) {
        PyBuffer_Release(&validity_out);
    }
    if (have_data) {
        PyBuffer_Release(&data_out);
    }
    return answer;
}

/* ---- module ------------------------------------------------------------- */

static PyMethodDef module_methods[] = {
    {"decode_column", (PyCFunction)(void (*)(void))decode_column, METH_FASTCALL,
     "decode_column(descriptor, length, column)\n--\n\n"
     "Return the Python values of one column as a list (None for NULL), as _codec.decode_column does;\n"
     "NotImplemented for a kind, layout or value left to _codec.decode_column."},
    {"encode_column", (PyCFunction)(void (*)(void))encode_column, METH_FASTCALL,
     "encode_column(descriptor, values)\n--\n\n"
     "Return (null_count, validity bytes or None, [buffers as bytes]) for a list of results, as\n"
     "_codec.encode_column encodes them; NotImplemented for a kind or value left to _codec.encode_column."},
    {"call_per_row", (PyCFunction)(void (*)(void))call_per_row, METH_FASTCALL,
     "call_per_row(function, arguments, length, skip_nulls, errors_to_null, check_none, caught)\n--\n\n"
     "Call function once per row of the argument columns; return (results, first_bad_row): first_bad_row is\n"
     "the first row whose arguments are all non-None and whose result is None when check_none, else -1.\n"
     "A row with a None argument is None without a call when skip_nulls; an exception of the classes in\n"
     "caught makes the row None when errors_to_null; any other exception propagates."},
    {"call_numbers", (PyCFunction)(void (*)(void))call_numbers, METH_FASTCALL,
     "call_numbers(function, columns, codes, length, skip_nulls, errors_to_null, check_none, caught, result_code,\n"
     "             validity_out, data_out)\n--\n\n"
     "call_per_row for number columns (offset, validity, data) of typecodes codes, read in place, each result\n"
     "written into validity_out and data_out as encode_column would write it. Return (null_count, first_bad_row,\n"
     "None), or (..., results), every row's result, where one is left to the codec; NotImplemented (nothing\n"
     "called) for columns or outputs not laid out so."},
    {NULL, NULL, 0, NULL},
};

static int
module_exec(PyObject *module)
{
    CodecState *state = state_of(module);
    /* datetime.h's file-level API pointer would be one C global for every interpreter: the API goes in the
       module's state instead, and the global stays NULL. */
    (void)PyDateTimeAPI;
    state->datetime_module = PyImport_ImportModule("datetime");
    if (state->datetime_module == NULL) {
        return -1;
    }
    PyObject *capsule = PyObject_GetAttrString(state->datetime_module, "datetime_CAPI");
    if (capsule == NULL) {
        return -1;
    }
    state->datetime_api = PyCapsule_GetPointer(capsule, PyDateTime_CAPSULE_NAME);
    Py_DECREF(capsule);
    if (state->datetime_api == NULL) {
        return -1;
    }
    /* DuckDB's infinite DATE and TIMESTAMP values come out as these, as from its own UDFs. */
    PyObject *date = (PyObject *)state->datetime_api->DateType;
    PyObject *datetime = (PyObject *)state->datetime_api->DateTimeType;
    state->date_max = PyObject_GetAttrString(date, "max");
    state->date_min = PyObject_GetAttrString(date, "min");
    state->datetime_max = PyObject_GetAttrString(datetime, "max");
    state->datetime_min = PyObject_GetAttrString(datetime, "min");
    if (state->date_max == NULL || state->date_min == NULL || state->datetime_max == NULL
        || state->datetime_min == NULL) {
        return -1;
    }
    return 0;
}

static int
module_traverse(PyObject *module, visitproc visit, void *arg)
{
    CodecState *state = state_of(module);
    Py_VISIT(state->datetime_module);
    Py_VISIT(state->date_max);
    Py_VISIT(state->date_min);
    Py_VISIT(state->datetime_max);
    Py_VISIT(state->datetime_min);
    return 0;
}

static int
module_clear(PyObject *module)
{
    CodecState *state = state_of(module);
    Py_CLEAR(state->datetime_module);
    Py_CLEAR(state->date_max);
    Py_CLEAR(state->date_min);
    Py_CLEAR(state->datetime_max);
    Py_CLEAR(state->datetime_min);
    state->datetime_api = NULL;
    return 0;
}

static void
module_free(void *module)
{
    module_clear((PyObject *)module);
}

static PyModuleDef_Slot module_slots[] = {
    {Py_mod_exec, module_exec},
    {Py_mod_multiple_interpreters, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED},
#ifdef Py_mod_gil
    {Py_mod_gil, Py_MOD_GIL_NOT_USED},
#endif
    {0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "duckdb_subinterp._codecc",
    .m_doc = "The codec's decode, encode and per-row call loop in C; _codec.py stays the definition.",
    .m_size = sizeof(CodecState),
    .m_methods = module_methods,
    .m_slots = module_slots,
    .m_traverse = module_traverse,
    .m_clear = module_clear,
    .m_free = module_free,
};

PyMODINIT_FUNC
PyInit__codecc(void)
{
    return PyModuleDef_Init(&module_def);
}
