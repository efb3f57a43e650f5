"""Table functions, on every backend, against DuckDB's own create_function + unnest.

The oracle is what a user can write today: DuckDB's own UDF returning a
list of structs, unnested by a table macro. A lateral query's rows are
compared input row by input row, in the order DuckDB returns them: each
input row's rows stay together and in the order the function yielded them.
"""

from __future__ import annotations

import itertools

import duckdb
import pytest
from support.script_helper import run_python
from udfs import aggregate_udfs

import duckdb_subinterp
from duckdb_subinterp import UDFRegistrationError

WORDS = {"word": "VARCHAR", "pos": "INTEGER"}
DOCS = """
CREATE TABLE docs AS SELECT
    i AS id,
    CASE WHEN i % 13 = 0 THEN NULL WHEN i % 7 = 0 THEN '' ELSE repeat('w' || (i % 10) || ' ', 1 + i % 5) || 'end' END
        AS text
FROM range(5000) r(i)
"""


def _oracle(
    con: duckdb.DuckDBPyConnection, name: str, function, parameters: list[str], columns: dict[str, str]
) -> None:
    """DuckDB's own UDF returning the rows as a list of structs, under a table macro that unnests them."""
    names = list(columns)

    def as_list(*arguments):
        if any(argument is None for argument in arguments):
            return None
        produced = function(*arguments) or []
        return [row if isinstance(row, dict) else dict(zip(names, row, strict=True)) for row in produced]

    fields = ", ".join(f'"{column}" {sql_type}' for column, sql_type in columns.items())
    con.create_function(f"{name}_rows", as_list, parameters, f"STRUCT({fields})[]", null_handling="special")
    arguments = ", ".join(f"a{index}" for index in range(len(parameters)))
    con.execute(
        f"CREATE TEMP MACRO {name}({arguments}) AS TABLE SELECT unnest({name}_rows({arguments}), max_depth := 2)"
    )


def by_input(result: list[tuple]) -> dict[object, list[tuple]]:
    """Group a lateral result's rows by their input (the first column), keeping the order they came in."""
    grouped: dict[object, list[tuple]] = {}
    for row in result:
        grouped.setdefault(row[0], []).append(row[1:])
    return grouped


@pytest.fixture
def docs(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    con.execute(DOCS)
    return con


def test_from_and_lateral_equal_duckdbs_own_udf_under_unnest(docs, backend):
    duckdb_subinterp.create_table_function(docs, "words", aggregate_udfs.words, ["VARCHAR"], WORDS, backend=backend)
    _oracle(docs, "oracle_words", aggregate_udfs.words, ["VARCHAR"], WORDS)
    assert docs.sql("FROM words('a b c')").fetchall() == [("a", 0), ("b", 1), ("c", 2)]
    assert docs.sql("SELECT * FROM words(text := 'x y')").fetchall() == [("x", 0), ("y", 1)]
    assert (
        docs.sql("DESCRIBE SELECT * FROM words('a')").fetchall()
        == docs.sql("DESCRIBE SELECT * FROM oracle_words('a')").fetchall()
    )
    ours = docs.sql("SELECT d.id, w.word, w.pos FROM docs d, words(d.text) w").fetchall()
    oracle = docs.sql("SELECT d.id, w.word, w.pos FROM docs d, oracle_words(d.text) w").fetchall()
    assert by_input(ours) == by_input(oracle)
    assert sorted(ours) == sorted(oracle) and len(ours) > 5000
    for rows in by_input(ours).values():  # each input's rows together, in the order yielded
        assert [position for _, position in rows] == list(range(len(rows)))
    # An input with a NULL argument has no rows (and no call); LEFT JOIN LATERAL keeps it, with NULLs.
    left = docs.sql(
        "SELECT d.id, w.word FROM docs d LEFT JOIN LATERAL words(d.text) w ON true WHERE d.id IN (13, 14, 15)"
    ).fetchall()
    assert sorted(left, key=repr) == [(13, None), (14, None), (15, "end"), (15, "w5")]
    if backend != "inline":
        stats = duckdb_subinterp.udf_stats(docs, "words")
        assert stats["rows"] >= 5000 - 5000 // 13 and stats["batches"] >= 3


def test_columns_of_many_types_with_nulls(con, backend):
    columns = {
        "n": "BIGINT",
        "quarter": "DOUBLE",
        "label": "VARCHAR",
        "values": "INTEGER[]",
        "pair": "STRUCT(a INTEGER, b VARCHAR)",
        "odd": "BOOLEAN",
    }
    duckdb_subinterp.create_table_function(
        con, "many", aggregate_udfs.many_types, ["INTEGER"], columns, backend=backend
    )
    _oracle(con, "oracle_many", aggregate_udfs.many_types, ["INTEGER"], columns)
    assert con.sql("FROM many(7)").fetchall() == con.sql("FROM oracle_many(7)").fetchall()
    assert con.sql("DESCRIBE FROM many(1)").fetchall() == con.sql("DESCRIBE FROM oracle_many(1)").fetchall()
    assert con.sql("SELECT count(*) FROM many(0)").fetchall() == [(0,)]


def test_rows_as_dicts_tuples_a_returned_list_or_none_and_annotated_row_types(con, backend):
    duckdb_subinterp.create_table_function(
        con, "dict_words", aggregate_udfs.words_as_dicts, ["VARCHAR"], WORDS, backend=backend
    )
    duckdb_subinterp.create_table_function(con, "annotated", aggregate_udfs.annotated_words, backend=backend)
    duckdb_subinterp.create_table_function(con, "tokens", aggregate_udfs.tokens, backend=backend)
    duckdb_subinterp.create_table_function(
        con,
        "maybe",
        aggregate_udfs.words_or_none,
        ["VARCHAR"],
        [("word", "VARCHAR"), ("pos", "INTEGER")],
        null_handling="special",
        backend=backend,
    )
    duckdb_subinterp.create_table_function(con, "upto", aggregate_udfs.numbers_upto, backend=backend)
    assert con.sql("FROM dict_words('a b')").fetchall() == [("a", 0), ("b", 1)]
    assert con.sql("FROM annotated('a b')").fetchall() == [("a", 0), ("b", 1)]
    assert con.sql("DESCRIBE FROM annotated('a')").fetchall()[1][:2] == ("pos", "BIGINT")
    assert con.sql("FROM tokens('ab c')").fetchall() == [("ab", 2), ("c", 1)]
    assert con.sql("FROM maybe(NULL)").fetchall() == []  # under 'special' the function got None, returned None
    assert con.sql("FROM maybe('x')").fetchall() == [("x", 0)]
    assert con.sql("SELECT sum(col0) FROM upto(100)").fetchall() == [(4950,)]


def test_null_arguments_give_no_rows_by_default_and_reach_the_function_under_special(con, backend):
    duckdb_subinterp.create_table_function(
        con, "plain", aggregate_udfs.describe_input, ["VARCHAR"], WORDS, backend=backend
    )
    duckdb_subinterp.create_table_function(
        con, "special", aggregate_udfs.describe_input, ["VARCHAR"], WORDS, null_handling="special", backend=backend
    )
    assert con.sql("FROM plain(NULL)").fetchall() == []
    assert con.sql("FROM special(NULL)").fetchall() == [("null", -1)]


def test_several_arguments_a_zero_argument_function_and_a_class_built_once_per_worker(docs, backend):
    duckdb_subinterp.create_table_function(
        docs,
        "repeat_rows",
        aggregate_udfs.repeat,
        ["BIGINT", "VARCHAR"],
        {"text": "VARCHAR", "i": "INTEGER"},
        backend=backend,
    )
    duckdb_subinterp.create_table_function(
        docs, "constant", aggregate_udfs.constant_rows, [], {"c": "VARCHAR", "n": "INTEGER"}, backend=backend
    )
    duckdb_subinterp.create_table_function(
        docs,
        "stateful",
        aggregate_udfs.WordsWithState,
        ["VARCHAR"],
        {"word": "VARCHAR", "instance": "INTEGER"},
        backend=backend,
    )
    assert docs.sql("FROM repeat_rows(3, 'x')").fetchall() == [("x", 0), ("x", 1), ("x", 2)]
    assert docs.sql("SELECT d.id, r.i FROM docs d, repeat_rows(d.id % 3, 'y') r WHERE d.id < 4").fetchall() == [
        (1, 0),
        (2, 0),
        (2, 1),
    ]
    assert docs.sql("FROM constant()").fetchall() == [("a", 1), ("b", 2)]
    instances = docs.sql("SELECT DISTINCT s.instance FROM docs d, stateful(d.text) s").fetchall()
    assert instances == [(1,)]  # each worker counts its own instances: one each


def test_async_functions_and_async_generators(docs, backend):
    duckdb_subinterp.create_table_function(
        docs, "async_words", aggregate_udfs.async_words, ["VARCHAR"], WORDS, backend=backend
    )
    duckdb_subinterp.create_table_function(
        docs, "agen_words", aggregate_udfs.async_generator_words, ["VARCHAR"], WORDS, backend=backend, max_concurrency=8
    )
    _oracle(docs, "oracle_words", aggregate_udfs.words, ["VARCHAR"], WORDS)
    query = "SELECT d.id, w.word, w.pos FROM docs d, {}(d.text) w WHERE d.id < 600"
    oracle = by_input(docs.sql(query.format("oracle_words")).fetchall())
    assert by_input(docs.sql(query.format("async_words")).fetchall()) == oracle
    assert by_input(docs.sql(query.format("agen_words")).fetchall()) == oracle


# The crash matrix: (function, what the error says), each failing on the input 'bad' only.
BAD_ROWS = [
    (
        aggregate_udfs.wrong_count,
        r"row 1 for the input \('bad',\) has 3 values, but the table has 2 columns \(word, pos\)",
    ),
    (aggregate_udfs.not_a_row, r"row 1 for the input \('bad',\) is str 'bad': a row is a tuple of 2 values or a dict"),
    (aggregate_udfs.missing_column, r"row 1 for the input \('bad',\) has no 'pos': the keys are the columns"),
    (aggregate_udfs.unknown_column, r"row 0 for the input \('bad',\) has unknown 'extra'"),
    (aggregate_udfs.wrong_type, r"row 1 for the input \('bad',\): column 'pos' \(INTEGER\) takes int, got str"),
    (
        aggregate_udfs.out_of_range,
        r"row 1 for the input \('bad',\): column 'pos' \(INTEGER\) takes -2147483648 to 2147483647, got 2147483648",
    ),
    (aggregate_udfs.raises_half_way, r"ValueError: broke after two rows"),
    (aggregate_udfs.returns_a_string, r"returned str 'bad' for the input \('bad',\); return or yield rows"),
]


@pytest.mark.parametrize(("function", "message"), BAD_ROWS, ids=[function.__name__ for function, _ in BAD_ROWS])
def test_a_bad_row_fails_the_query_naming_the_function_and_the_row_and_the_next_query_works(
    docs, backend, function, message
):
    duckdb_subinterp.create_table_function(docs, "hostile", function, ["VARCHAR"], WORDS, backend=backend)
    lateral = "SELECT count(*) FROM (SELECT text FROM docs UNION ALL SELECT 'bad') d, hostile(d.text) w"
    with pytest.raises(duckdb.Error, match=message) as raised:
        docs.sql(lateral).fetchall()
    text = str(raised.value)
    if function is aggregate_udfs.raises_half_way:
        if backend != "inline":  # DuckDB's own message for its own UDF has the exception's text only
            assert "(raised in UDF 'hostile (table function)')" in text
            assert "(in table function 'hostile', for the input ('bad',), after 2 rows)" in text
    else:
        assert "table function 'hostile'" in text
    # The next query on the same connection and function works.
    good = docs.sql("SELECT count(*) FROM docs d, hostile(d.text) w WHERE d.id < 100").fetchall()
    assert good[0][0] >= 0


def test_exception_handling_return_null_drops_a_failing_inputs_rows(docs, backend):
    duckdb_subinterp.create_table_function(
        docs,
        "lenient",
        aggregate_udfs.raises_half_way,
        ["VARCHAR"],
        WORDS,
        exception_handling="return_null",
        backend=backend,
    )
    assert docs.sql("SELECT d.t, w.pos FROM (VALUES ('ok'), ('bad')) d(t), lenient(d.t) w ORDER BY ALL").fetchall() == [
        ("ok", 0),
        ("ok", 1),
        ("ok", 2),
    ]


def test_remove_function_and_registration_mistakes(con):
    duckdb_subinterp.create_table_function(con, "words", aggregate_udfs.words, ["VARCHAR"], WORDS)
    with pytest.raises(UDFRegistrationError, match="this connection has table function 'words' already"):
        duckdb_subinterp.create_table_function(con, "words", aggregate_udfs.words, ["VARCHAR"], WORDS)
    duckdb_subinterp.remove_function(con, "words")
    with pytest.raises(duckdb.CatalogException, match="words"):
        con.sql("FROM words('a')").fetchall()
    assert con.sql("SELECT count(*) FROM duckdb_functions() WHERE function_name LIKE 'words%'").fetchall() == [(0,)]
    for taken in ["range", "read_csv", "generate_series", "sum"]:
        with pytest.raises(UDFRegistrationError, match=f"DuckDB already has .* function '{taken}'"):
            duckdb_subinterp.create_table_function(con, taken, aggregate_udfs.words, ["VARCHAR"], WORDS)
    mistakes = [
        ({"columns": None}, "no columns: pass columns="),
        ({"columns": {}}, "at least one column"),
        ({"columns": ["word"]}, "columns must be a dict"),
        ({"columns": {"word": "VARCHAR", "WORD": "INTEGER"}}, "column 'WORD' is named twice"),
        ({"columns": {"word": "NO_SUCH_TYPE"}}, "column 'word' type 'NO_SUCH_TYPE' is not a DuckDB type"),
        ({"parameters": ["VARCHAR", "VARCHAR"], "columns": WORDS}, "2 types provided, but the provided function"),
        ({"columns": {"v": "VARIANT"}}, "column 'v': type VARIANT is not supported"),
    ]
    for arguments, message in mistakes:
        with pytest.raises(UDFRegistrationError, match=message):
            duckdb_subinterp.create_table_function(con, "mistake", aggregate_udfs.words, **arguments)

    def mixed(text: str, separator):  # one ANY argument would make the scalar UDF behind the macro ANY for all
        yield (text,)

    with pytest.raises(UDFRegistrationError, match="parameter 'separator' not annotated while the others are"):
        duckdb_subinterp.create_table_function(con, "mistake", mixed, columns={"word": "VARCHAR"})
    assert con.sql("SELECT count(*) FROM duckdb_functions() WHERE function_name LIKE 'mistake%'").fetchall() == [(0,)]


def test_many_lateral_input_rows_run_in_parallel_and_equal_the_oracle(con, backend):
    con.execute("CREATE TABLE lines AS SELECT i AS id, 'a b ' || i AS text FROM range(20000) r(i)")
    duckdb_subinterp.create_table_function(
        con, "spin_words", aggregate_udfs.spin_words, ["VARCHAR"], WORDS, backend=backend
    )
    _oracle(con, "oracle_words", aggregate_udfs.words, ["VARCHAR"], WORDS)
    query = "SELECT l.id, w.word, w.pos FROM lines l, {}(l.text) w"
    ours = con.sql(query.format("spin_words")).fetchall()
    assert by_input(ours) == by_input(con.sql(query.format("oracle_words")).fetchall())
    assert len(ours) == 60000 and list(itertools.islice(ours, 3)) == [(0, "a", 0), (0, "b", 1), (0, "0", 2)]


HOSTILE_CHILD = """
import duckdb, duckdb_subinterp
from udfs import aggregate_udfs
con = duckdb.connect()
pool = duckdb_subinterp.{pool}(2, timeout=3)
duckdb_subinterp.create_table_function(
    con, "hostile", aggregate_udfs.{function}, ["VARCHAR"], {{"word": "VARCHAR", "pos": "INTEGER"}},
    backend={backend!r}, pool=pool,
)
try:
    con.sql("SELECT count(*) FROM (VALUES ('a'), ('bad')) d(t), hostile(d.t) w").fetchall()
except Exception as error:
    print(type(error).__name__, str(error).splitlines()[0])
print(con.sql("SELECT count(*) FROM (VALUES ('a'), ('b')) d(t), hostile(d.t) w").fetchall())
pool.close()
"""


@pytest.mark.parametrize(
    ("pool", "backend", "function", "expected"),
    [
        ("ProcessPool", "processes", "exits_worker", "WorkerDiedError"),
        ("ProcessPool", "processes", "never_ends", "PoolTimeoutError"),
        ("InterpreterPool", "subinterpreters", "never_ends", "PoolTimeoutError"),
    ],
)
def test_a_dying_or_endless_table_function_fails_its_query_and_the_pool_recovers(pool, backend, function, expected):
    script = HOSTILE_CHILD.format(pool=pool, backend=backend, function=function)
    result = run_python("-c", script, timeout=120)
    assert result.returncode == 0, result.report()
    first, second = result.stdout.strip().splitlines()
    assert expected in first and "hostile (table function)" in first, first
    assert second == "[(2,)]"


@pytest.mark.parametrize(
    ("column_type", "inside", "beyond"),
    [
        ("UTINYINT", 255, -1),
        ("SMALLINT", -(2**15), 2**15),
        ("UBIGINT", 2**64 - 1, 2**64),
        ("HUGEINT", -(2**127), 2**127),
    ],
)
def test_an_integer_column_takes_its_types_range_and_names_the_row_beyond_it(con, column_type, inside, beyond):
    duckdb_subinterp.create_table_function(
        con, "values_of", lambda text: [(int(text),)], ["VARCHAR"], {"v": column_type}, backend="inline"
    )
    assert con.sql(f"FROM values_of('{inside}')").fetchall() == [(inside,)]
    with pytest.raises(duckdb.Error, match=rf"row 0 for the input \('{beyond}',\): column 'v' \({column_type}\) takes"):
        con.sql(f"FROM values_of('{beyond}')").fetchall()
