// The evaluator of the Python code harness (see code_harness.h), kept as the Python it is.
#include "reward/code_harness.h"

namespace r1::reward {

extern const char* const kHarnessEvaluatorPy = R"py(
# The trusted side of the code harness (its own sandbox; never runs the model's code). Runs each
# test from tests.json; the solution's names are fetched from the runner (descriptors 4 and 5) as
# the test uses them, and calling a function asks the runner for its value. Values arrive as plain
# data and are rebuilt here from JSON, so the comparison is Python's own on genuine ints, lists,
# strings... An object the solution made stays a proxy that has no truth value and equals only
# itself. Builtins and standard modules are this process's own, whatever the solution redefined. One verdict line per test goes to the
# descriptor stdout had at start; anything the tests print goes to stderr.
import ast
import builtins
import json
import os
import signal
import sys

VERDICTS = os.dup(1)
os.dup2(2, 1)
REQUESTS, REPLIES = 4, 5
MAX_REPLY = 16 << 20


class Broken(Exception):
    """The channel to the solution is unusable (it ended, or sent garbage): stop here."""


class TestTimeout(BaseException):
    pass


class SolutionError(Exception):
    """The solution raised an exception that is not a builtin one."""


def on_alarm(signum, frame):
    raise TestTimeout()


pending = bytearray()


def read_message():
    global pending
    while True:
        nl = pending.find(b"\n")
        if nl >= 0:
            line = bytes(pending[:nl])
            del pending[: nl + 1]
            try:
                msg = json.loads(line)
            except ValueError:
                raise Broken("the solution's process sent an unreadable reply") from None
            if type(msg) is not dict:
                raise Broken("the solution's process sent an unreadable reply")
            return msg
        if len(pending) > MAX_REPLY:
            raise Broken("a reply over %d bytes" % MAX_REPLY)
        chunk = os.read(REPLIES, 1 << 16)
        if not chunk:
            raise Broken("the solution's process ended")
        pending += chunk


def send(obj):
    data = (json.dumps(obj) + "\n").encode()
    try:
        while data:
            data = data[os.write(REQUESTS, data):]
    except OSError:
        raise Broken("the solution's process ended") from None


class BadValue(Exception):
    pass


def decode(v, depth=0):
    if depth > 200:
        raise BadValue("value nested too deeply")
    t = type(v)
    if v is None or t is bool or t is int or t is float or t is str:
        return v
    if t is list:
        return [decode(x, depth + 1) for x in v]
    if t is not dict or len(v) != 1:
        raise BadValue("unreadable value")
    (tag, x), = v.items()

    def items():
        if type(x) is not list:
            raise BadValue("unreadable value")
        return [decode(i, depth + 1) for i in x]

    try:
        if tag == "t":
            return tuple(items())
        if tag == "d":
            return {decode(k, depth + 1): decode(i, depth + 1) for k, i in x}
        if tag == "s":
            return set(items())
        if tag == "f":
            return frozenset(items())
        if tag == "b" and type(x) is str:
            return bytes.fromhex(x)
        if tag == "y" and type(x) is str:
            return bytearray.fromhex(x)
        if tag == "c" and all(type(i) in (int, float) for i in x):
            return complex(x[0], x[1])
        if tag == "q" and all(type(i) is int for i in x):
            import fractions
            return fractions.Fraction(x[0], x[1])
        if tag == "m" and type(x) is str:
            import decimal
            return decimal.Decimal(x)
        if tag == "h" and type(x) is int:
            return Remote({"h": x})
    except (TypeError, ValueError, ArithmeticError, IndexError):
        pass
    raise BadValue("unreadable value")


def encode(x, depth=0):
    if depth > 100:
        raise TypeError("argument nested too deeply")
    t = type(x)
    if x is None or t is bool or t is int or t is float or t is str:
        return x
    if t is list:
        return [encode(v, depth + 1) for v in x]
    if t is tuple:
        return {"t": [encode(v, depth + 1) for v in x]}
    if t is dict:
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
    if t is Remote:
        return object.__getattribute__(x, "_ref")
    name = t.__module__ + "." + t.__qualname__
    if name == "fractions.Fraction":
        return {"q": [x.numerator, x.denominator]}
    if name == "decimal.Decimal":
        return {"m": str(x)}
    raise TypeError("cannot pass a %s to the solution" % t.__name__)


def solution_exception(reply):
    name, message = str(reply.get("e")), str(reply.get("m", ""))
    kind = getattr(builtins, name, None)
    # Builtin exceptions keep their type, so tests that expect one (pytest.raises-style) work.
    if isinstance(kind, type) and issubclass(kind, Exception) and not issubclass(kind, StopIteration):
        return kind(message)
    return SolutionError("%s: %s" % (name, message))


def request(msg, args=()):
    send(msg)
    reply = read_message()
    if "e" in reply:
        raise solution_exception(reply)
    if "v" not in reply:
        raise Broken("the solution's process sent an unreadable reply")
    value = decode(reply["v"])
    for i, after in reply.get("a", []) if type(reply.get("a")) is list else []:
        if type(i) is int and 0 <= i < len(args):
            update_in_place(args[i], decode(after))
    return value


def update_in_place(arg, new):
    if type(arg) is list and type(new) is list or type(arg) is bytearray and type(new) is bytearray:
        arg[:] = new
    elif type(arg) in (dict, set) and type(new) is type(arg):
        arg.clear()
        arg.update(new)


class Remote:
    """A name or object of the solution, living in the runner. Only values cross over."""

    __slots__ = ("_ref",)

    def __init__(self, ref):
        object.__setattr__(self, "_ref", ref)

    def __call__(self, *args, **kwargs):
        ref = object.__getattribute__(self, "_ref")
        msg = {"op": "call", "t": ref, "a": [encode(a) for a in args], "k": {k: encode(v) for k, v in kwargs.items()}}
        return request(msg, args)

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return request({"op": "attr", "t": object.__getattribute__(self, "_ref"), "n": name})

    def __getitem__(self, key):
        return request({"op": "item", "t": object.__getattribute__(self, "_ref"), "i": encode(key)})

    def __iter__(self):
        value = request({"op": "iter", "t": object.__getattribute__(self, "_ref")})
        if type(value) is not list:
            raise TypeError("iteration did not give a list")
        return iter(value)

    def __len__(self):
        value = request({"op": "len", "t": object.__getattribute__(self, "_ref")})
        if type(value) is not int or value < 0:
            raise TypeError("len() did not give a non-negative int")
        return value

    def __str__(self):
        value = request({"op": "str", "t": object.__getattribute__(self, "_ref")})
        if type(value) is not str:
            raise TypeError("str() did not give a str")
        return value

    __repr__ = __str__

    # An object of the solution's own type is never equal to anything but itself and has no truth
    # value: its own __eq__ / __bool__ would be the solution grading itself.
    def __eq__(self, other):
        return self is other

    def __ne__(self, other):
        return self is not other

    __hash__ = object.__hash__

    def __bool__(self):
        raise TypeError("an object of the solution's own type has no trusted truth value")


class TestGlobals(dict):
    """A test's globals. A name the test does not define is looked up when first used: builtins are
    always this process's own, even where the solution defines its own; a standard module used as
    a module (math.isclose) is imported here; any other name is the solution's, fetched from the
    runner as a value (a constant arrives as a genuine int, list...; a function or class as a proxy)."""

    def __init__(self, called):
        super().__init__(__builtins__=builtins, __name__="__test__")
        self.called = called  # names the test calls directly: functions, never modules

    def __missing__(self, name):
        if name.startswith("__") or hasattr(builtins, name):
            raise KeyError(name)
        value = None
        if name in sys.stdlib_module_names and name not in self.called:
            try:
                value = __import__(name)
            except ImportError:
                pass
        if value is None:
            value = request({"op": "get", "t": {"g": name}})
        self[name] = value
        return value


def globals_for(tree):
    return TestGlobals({n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)})


def verdict(index, passed, why=""):
    data = (json.dumps({"i": index, "pass": passed, "why": why[:300]}) + "\n").encode()
    while data:
        data = data[os.write(VERDICTS, data):]


def describe(e):
    return "%s: %s" % (type(e).__name__, str(e)[:200]) if str(e) else type(e).__name__


def main():
    with open("tests.json", encoding="utf-8") as f:
        job = json.load(f)
    signal.signal(signal.SIGALRM, on_alarm)
    tests = job["tests"]
    signal.setitimer(signal.ITIMER_REAL, job["load_seconds"])
    try:
        ready = read_message()
    except TestTimeout:
        ready = {"ready": False, "e": "Timeout", "m": "the solution did not load within %gs" % job["load_seconds"]}
    except Broken as e:
        ready = {"ready": False, "e": "Exit", "m": str(e)}
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    if ready.get("ready") is not True:
        why = "the solution did not load: %s: %s" % (ready.get("e"), ready.get("m"))
        for t in tests:
            verdict(t["index"], False, why)
        return
    for t in tests:
        stop = None
        try:
            tree = ast.parse(t["code"], "<test>")
            code = compile(tree, "<test %d>" % t["index"], "exec")
            g = globals_for(tree)
            signal.setitimer(signal.ITIMER_REAL, job["test_seconds"])
            try:
                exec(code, g)
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            result = (True, "")
        except AssertionError as e:
            result = (False, "assertion failed" + (": " + str(e)[:200] if str(e) else ""))
        except TestTimeout:
            result = stop = (False, "timed out after %gs" % job["test_seconds"])
        except Broken as e:
            result = stop = (False, str(e))
        except SyntaxError as e:
            result = (False, "the test does not compile: " + describe(e))
        except Exception as e:
            result = (False, "raised " + describe(e))
        verdict(t["index"], *result)
        if stop:
            return  # the channel may hold a late reply: a fresh pair runs the remaining tests


main()
)py";

}  // namespace r1::reward
