"""The ``stream`` connector: generated rows in, printed or discarded rows out (DataX
``streamreader``/``streamwriter``), for tests, demos and benchmarks.

Reader parameters::

    column:            [{type, value} | {type, random: "lo,hi"} | {type, incr: "start[,step]"}, ...]
                       types: long, double, string, boolean, date, bytes;
                       an optional ``name`` per column (default c0, c1, ...)
    sliceRecordCount:  rows per split, as in DataX (the job makes one split per channel)
    recordCount:       total rows instead, spread over the splits

Writer parameters::

    print:             true prints each row to standard output; false discards (default true)
    fieldDelimiter:    between printed values (default tab)
"""

from tidesync.connectors.stream.reader import Reader
from tidesync.connectors.stream.writer import Writer

__all__ = ["Reader", "Writer"]
