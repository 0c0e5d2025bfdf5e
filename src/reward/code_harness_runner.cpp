// The runner of the Python code harness (see code_harness.h), kept as the Python it is.
#include "reward/code_harness.h"

namespace r1::reward {

extern const char* const kHarnessRunnerPy = R"py(
# The solution's side of the code harness (runs in its own sandbox, beside the model's code).
# Loads solution.py as the module "solution", then answers the evaluator's requests (a global's value,
# call a function, read an attribute, index, iterate) with plain data, one JSON line each. Nothing sent from here is a
# verdict: the evaluator, in another sandbox the solution cannot reach, decides every test from the
# values, so whatever the solution does to this process (exit, atexit, patched builtins, printed
# "PASS" lines, objects whose __eq__ says yes) can at worst make its own answers wrong.
import json
import os
import sys
import types


def main():
    requests = os.fdopen(os.dup(0), "rb")
    reply_fd = os.dup(1)
    null = os.open("/dev/null", os.O_RDWR)
    os.dup2(null, 0)  # the solution reads nothing and prints nowhere that matters
    os.dup2(null, 1)
    os.close(null)
    sys.setrecursionlimit(10000)
    handles = {}

    def send(obj):
        data = (json.dumps(obj) + "\n").encode()
        while data:
            data = data[os.write(reply_fd, data):]

    def encode(x, depth=0):
        if depth > 100:
            raise ValueError("value nested too deeply")
        t = type(x)
        if x is None or t is bool or t is str or t is int or t is float:
            return x
        if t is list:
            return [encode(v, depth + 1) for v in x]
        if t is tuple or isinstance(x, tuple):
            return {"t": [encode(v, depth + 1) for v in x]}
        if t is dict or isinstance(x, dict):
            return {"d": [[encode(k, depth + 1), encode(v, depth + 1)] for k, v in x.items()]}
        if t is set:
            return {"s": [encode(v, depth + 1) for v in x]}
        if t is frozenset:
            return {"f": [encode(v, depth + 1) for v in x]}
        if t is bytes:
            return {"b": x.hex()}
        if t is bytearray:
            return {"y": x.hex()}
        if t is complex:
            return {"c": [x.real, x.imag]}
        if isinstance(x, bool):
            return bool(x)
        if isinstance(x, int):  # IntEnum and friends compare as their value
            return int(x)
        if isinstance(x, float):
            return float(x)
        if isinstance(x, str):
            return str(x)
        name = t.__module__ + "." + t.__qualname__
        if name == "fractions.Fraction":
            return {"q": [x.numerator, x.denominator]}
        if name == "decimal.Decimal":
            return {"m": str(x)}
        handles[id(x)] = x
        return {"h": id(x)}

    def decode(v):
        if type(v) is list:
            return [decode(x) for x in v]
        if type(v) is not dict:
            return v
        (tag, x), = v.items()
        if tag == "h":
            return handles[x]
        if tag == "t":
            return tuple(decode(i) for i in x)
        if tag == "d":
            return {decode(k): decode(i) for k, i in x}
        if tag == "s":
            return {decode(i) for i in x}
        if tag == "f":
            return frozenset(decode(i) for i in x)
        if tag == "b":
            return bytes.fromhex(x)
        if tag == "y":
            return bytearray.fromhex(x)
        if tag == "c":
            return complex(x[0], x[1])
        if tag == "q":
            import fractions
            return fractions.Fraction(x[0], x[1])
        if tag == "m":
            import decimal
            return decimal.Decimal(x)
        raise ValueError("unknown tag " + tag)

    module = types.ModuleType("solution")
    module.__file__ = "solution.py"
    sys.modules["solution"] = module

    def target(t):
        if "g" in t:
            try:
                return getattr(module, t["g"])
            except AttributeError:
                raise NameError("name '%s' is not defined" % t["g"]) from None
        return handles[t["h"]]

    def answer(req):
        op, obj = req["op"], target(req["t"])
        if op == "get":
            return {"v": encode(obj)}
        if op == "call":
            args = [decode(a) for a in req["a"]]
            kwargs = {k: decode(v) for k, v in req["k"].items()}
            value = obj(*args, **kwargs)
            # In-place changes to list, dict and set arguments travel back, as a caller would see them.
            after = [[i, encode(a)] for i, a in enumerate(args) if type(a) in (list, dict, set, bytearray)]
            return {"v": encode(value), "a": after}
        if op == "attr":
            return {"v": encode(getattr(obj, req["n"]))}
        if op == "item":
            return {"v": encode(obj[decode(req["i"])])}
        if op == "iter":
            return {"v": encode(list(obj))}
        if op == "len":
            return {"v": encode(len(obj))}
        if op == "str":
            return {"v": encode(str(obj))}
        raise ValueError("unknown request " + op)

    try:
        with open("solution.py", encoding="utf-8") as f:
            source = f.read()
        exec(compile(source, "solution.py", "exec"), module.__dict__)
    except BaseException as e:  # SystemExit and KeyboardInterrupt too: the solution did not load
        send({"ready": False, "e": type(e).__name__, "m": str(e)[:300]})
        return
    send({"ready": True})
    for line in requests:
        try:
            reply = answer(json.loads(line))
        except BaseException as e:
            reply = {"e": type(e).__name__, "m": str(e)[:300]}
        try:
            send(reply)
        except (TypeError, ValueError) as e:  # a reply JSON cannot hold
            send({"e": type(e).__name__, "m": str(e)[:300]})


main()
)py";

}  // namespace r1::reward
