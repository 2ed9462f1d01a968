"""A warm parent that forks real ``cosmo-runner`` processes for the tests (fixture ``forked``).

A fresh interpreter pays start-up and imports (about 0.4 s of CPU) and a fresh environment
gate (0.2 s) before a run does anything. Tests where a real process is the point (signals,
kill, racing processes, broken stdout/stderr) but the interpreter's start is not get their
process from :class:`ForkServer`: one helper process per pytest worker, started as a script
(``python tests/forkserver.py``, the way a console script starts), that imports cosmo_runner
once and forks a child per request. The child is a real process with its own pid, file
descriptors, signal dispositions and exit status; before it calls ``cli.main()`` it is made
what ``cosmo-runner ARGS`` would be:

- its descriptors 0, 1 and 2 are the ones the test passed (a pipe, ``/dev/full``, a
  read-only file) or closed, and ``sys.stdin``/``sys.stdout``/``sys.stderr`` are rebuilt
  from them as interpreter start-up builds them (``None`` for a closed one, buffering by
  ``PYTHONUNBUFFERED``, stderr ``backslashreplace``); no other descriptor is open;
- ``sys.argv`` is the console script's, ``sys.path[0]`` its folder, then ``PYTHONPATH``'s
  entries (the only interpreter-start variable emulated; the others, and the locale's
  ``LANG``/``LC_ALL``/``LC_CTYPE``, are the server's, so a test may not set them);
- its environment, working directory and umask are the request's; SIGINT, SIGTERM and the
  other signals have the dispositions a fresh interpreter started by the test gets: the
  ones the server started with (inherited from pytest as a test's subprocess inherits them;
  in a background job of a non-interactive shell, as in .ci/run, SIGINT and SIGQUIT are
  ignored), none blocked;
- it ends as the console script does, ``sys.exit(main())``: through interpreter shutdown.

What stays the server's: the interpreter's start-up configuration (above), the hash seed
(every child shares it: set iteration order does not vary between children as between fresh
interpreters) and the modules already imported (cosmo_runner's, numpy for the gate; no scipy
or matplotlib, whose BLAS would show in the environment snapshot).
tests/test_forkserver.py compares a child with a fresh interpreter field by field.

``gate="reused"`` (default) hands ``main`` a :class:`tests.gates.ReusedGate` warmed in the
server for the request's environment, as the in-process ``cli`` fixture does: use it where the
gate is not the point. ``gate="fresh"`` is the real default, observed and checked in the child.

The server waits for each child (``wait4``) and reports its status and CPU time, which is
charged to the running test (tests/cputime.py), so ``--cpu-times`` stays true per test.
Linux only (``os.pidfd_open``). Keep a fresh-interpreter test (``run_cli``) beside each class
of forked test: the entry point itself is tested there.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import resource
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

CLOSED = -10  # a standard descriptor the child starts without (like ``sh -c 'exec ... >&-'``)
_MAX_FDS = 4
_LOCALE = frozenset({"LANG", "LC_ALL", "LC_CTYPE"})  # they decide the std streams' encoding

# ----------------------------------------------------------------------------- the server


def _threads() -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        line = next(line for line in status if line.startswith("Threads:"))
    return int(line.split()[1])


class _Server:
    def __init__(self, control: socket.socket, script: str) -> None:
        from cosmo_runner import cli, pipeline, validators  # noqa: F401 - warm imports
        from cosmo_runner.triage import report  # noqa: F401
        from tests.gates import ReusedGate

        self.control = control
        self.script = script  # the console script the children pretend to be
        self.base_path = sys.path[1:]  # without this file's folder
        self.gate = ReusedGate()
        self.selector = selectors.DefaultSelector()
        self.selector.register(control, selectors.EVENT_READ)
        self.children: dict[int, tuple[int, socket.socket]] = {}  # pidfd -> (pid, reply)

    def warm_up(self, spec: str) -> None:
        """One complete run here first: what a run builds once per process (schema
        validators, the report's templates, lazy imports) is built before any fork."""
        from cosmo_runner.cli import main

        saved_path, saved_cwd = list(sys.path), os.getcwd()
        out = Path(spec).parent / "warm-up"
        sys.path[:] = self.child_path(dict(os.environ))
        os.chdir(out.parent)
        try:
            code = main(["run", spec, "--out", str(out)], gate=self.gate)
        finally:
            sys.path[:] = saved_path
            os.chdir(saved_cwd)
        if code != 0:
            raise RuntimeError(f"the warm-up run failed with exit {code} (see this log)")

    def child_path(self, env: dict[str, str]) -> list[str]:
        extra = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
        return [os.path.dirname(self.script), *extra, *self.base_path]

    def warm(self, request: dict[str, Any]) -> None:
        """Observe and check the request's environment here, so the child reuses it."""
        from cosmo_runner.cli import build_parser

        saved_env, saved_cwd, saved_path = dict(os.environ), os.getcwd(), list(sys.path)
        try:
            os.environ.clear()
            os.environ.update(request["env"])
            os.chdir(request["cwd"])
            sys.path[:] = self.child_path(request["env"])
            try:
                with (
                    contextlib.redirect_stdout(io.StringIO()),
                    contextlib.redirect_stderr(io.StringIO()),
                ):
                    args = build_parser().parse_args(request["args"])
            except SystemExit:  # --help, --version, a usage error: nothing to warm
                return
            if getattr(args, "command", None) in ("run", "validate"):
                state = self.gate.observe(args.manifest, None)
                self.gate.check(state, strict=args.strict, imports=None, probe_all=False)
        finally:
            os.environ.clear()
            os.environ.update(saved_env)
            os.chdir(saved_cwd)
            sys.path[:] = saved_path

    def serve(self) -> tuple[dict[str, Any], list[int]] | None:
        """Fork a child per request until the control socket closes; in the child, return
        the request and its descriptors."""
        while True:
            for key, _ in self.selector.select():
                if key.fileobj is self.control:
                    message, fds, _, _ = socket.recv_fds(self.control, 1 << 20, _MAX_FDS)
                    if not message:  # the tests are over: a child still running was left
                        self.stop_children()  # by a failed test; it goes with the server
                        return None
                    child = self.start(json.loads(message), fds)
                    if child is not None:
                        return child
                else:
                    self.reap(key.fd)

    def start(
        self, request: dict[str, Any], fds: list[int]
    ) -> tuple[dict[str, Any], list[int]] | None:
        reply = socket.socket(fileno=fds[0])
        stdio = fds[1:]
        try:
            before = _own_cpu()
            if request["gate"] == "reused":
                # a failure here is the child's to meet again and report, in its own run
                with contextlib.suppress(Exception):
                    self.warm(request)
            warm_cpu = _own_cpu() - before  # the test's too: reported with the pid
            if threading.active_count() != 1:  # a fork keeps one thread: refuse, not break
                raise RuntimeError(f"the fork server runs {threading.active_count()} threads")
            pid = os.fork()
            # numpy's OpenBLAS stops its idle pool before a fork (pthread_atfork) and starts
            # it again when next used: at the fork this thread was the only one
            if pid and _threads() != 1:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                raise RuntimeError(f"{_threads()} threads were running during the fork")
        except Exception as exc:  # reported to the test, which fails with it
            reply.sendall(json.dumps({"error": f"{type(exc).__name__}: {exc}"}).encode())
            reply.close()
            for fd in stdio:
                os.close(fd)
            return None
        if pid == 0:
            self.selector.close()
            self.control.close()
            for pidfd, (_, other) in self.children.items():
                os.close(pidfd)
                other.close()
            reply.close()
            return request, stdio
        for fd in stdio:
            os.close(fd)
        pidfd = os.pidfd_open(pid)
        self.children[pidfd] = (pid, reply)
        self.selector.register(pidfd, selectors.EVENT_READ)
        reply.sendall(json.dumps({"pid": pid, "cpu": warm_cpu}).encode())
        return None

    def stop_children(self) -> None:
        for pidfd, (pid, _) in list(self.children.items()):
            os.kill(pid, signal.SIGKILL)
            self.reap(pidfd)

    def reap(self, pidfd: int) -> None:
        pid, reply = self.children.pop(pidfd)
        self.selector.unregister(pidfd)
        os.close(pidfd)
        _, status, usage = os.wait4(pid, 0)
        cpu = usage.ru_utime + usage.ru_stime
        with contextlib.suppress(OSError):  # the test went away
            reply.sendall(json.dumps({"status": status, "cpu": cpu}).encode())
        reply.close()


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _std_stream(fd: int, unbuffered: bool) -> IO[str] | None:
    """``sys.stdin``/``stdout``/``stderr`` as interpreter start-up makes them on POSIX
    (CPython's ``create_stdio``): ``None`` for a closed descriptor; stdin always buffered;
    with ``PYTHONUNBUFFERED`` stdout and stderr unbuffered and written through, else line
    buffered on a terminal and for stderr; encoding and errors as this interpreter's own
    (the server's locale is the test's), stderr ``backslashreplace``."""
    try:
        os.fstat(fd)
    except OSError:
        return None
    write = fd != 0
    raw = io.FileIO(fd, "wb" if write else "rb", closefd=False)
    raw.name = ("<stdin>", "<stdout>", "<stderr>")[fd]  # type: ignore[misc]
    buffer: Any
    if write and unbuffered:
        buffer = raw
    else:
        buffer = io.BufferedWriter(raw) if write else io.BufferedReader(raw)
    template = sys.__stdout__ or sys.__stdin__
    stream = io.TextIOWrapper(
        buffer,
        encoding=template.encoding if template else "utf-8",
        errors="backslashreplace" if fd == 2 else (template.errors if template else "strict"),
        newline="\n",
        line_buffering=not unbuffered and (raw.isatty() or fd == 2),
        write_through=unbuffered,
    )
    stream.mode = "w" if write else "r"  # type: ignore[misc]
    return stream


def _become(server: _Server, request: dict[str, Any], stdio: list[int]) -> None:
    """Turn the forked child into ``cosmo-runner ARGS`` started afresh (module docstring)."""
    for target, fd in zip((0, 1, 2), request["stdio"], strict=True):
        if fd == CLOSED:
            os.close(target)
    for target, fd in zip(
        (t for t, f in zip((0, 1, 2), request["stdio"], strict=True) if f != CLOSED),
        stdio,
        strict=True,
    ):
        os.dup2(fd, target)
    for fd in set(stdio) - {0, 1, 2}:
        os.close(fd)
    os.closerange(3, 1 << 16)  # nothing of the server's stays open: a new process has 0-2
    unbuffered = bool(request["env"].get("PYTHONUNBUFFERED"))
    sys.stdin = sys.__stdin__ = _std_stream(0, unbuffered)  # type: ignore[misc]
    sys.stdout = sys.__stdout__ = _std_stream(1, unbuffered)  # type: ignore[misc]
    sys.stderr = sys.__stderr__ = _std_stream(2, unbuffered)  # type: ignore[misc]
    os.environ.clear()
    os.environ.update(request["env"])
    os.chdir(request["cwd"])
    os.umask(request["umask"])
    sys.path[:] = server.child_path(request["env"])
    sys.argv = [server.script, *request["args"]]
    for signum, handler in _STARTED_WITH.items():
        signal.signal(signum, handler)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    if request["prelude"]:
        module, _, function = request["prelude"].partition(":")
        getattr(__import__(module, fromlist=[function]), function)(**request["prelude_args"])


#: The signals a child gets back as the server started with them (before any warm-up run), as
#: a fresh interpreter would set them up from what it inherited: SIG_DFL, SIG_IGN, or for
#: SIGINT Python's default_int_handler unless it was inherited ignored.
_RESET_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGCHLD)
_STARTED_WITH: dict[int, Any] = {}


def _serve_forever(control_fd: int, script: str, spec: str) -> None:
    """The server's main: returns only in a forked child, ready to be the program."""
    _STARTED_WITH.update({signum: signal.getsignal(signum) for signum in _RESET_SIGNALS})
    control = socket.socket(fileno=control_fd)
    server = _Server(control, script)
    server.warm_up(spec)
    import gc

    gc.freeze()  # the children share the warm heap instead of copying it on the first gc
    child = server.serve()
    if child is None:
        sys.exit(0)
    request, stdio = child
    _become(server, request, stdio)
    from cosmo_runner.cli import main

    sys.exit(main(gate=server.gate if request["gate"] == "reused" else None))


# ----------------------------------------------------------------------------- the client


class ForkedProcess:
    """A forked ``cosmo-runner`` child, driven like :class:`subprocess.Popen`."""

    def __init__(
        self, server: ForkServer, pid: int, reply: socket.socket, pipes: dict[str, IO[Any] | None]
    ) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self.stdout = pipes["stdout"]
        self.stderr = pipes["stderr"]
        self._server = server
        self._reply = reply

    def _collect(self, timeout: float | None) -> int | None:
        """The exit code once the server reports it (``None`` if not within ``timeout``)."""
        if self.returncode is not None:
            return self.returncode
        self._reply.settimeout(timeout)
        try:
            message = self._reply.recv(1 << 16)
        except (TimeoutError, BlockingIOError):
            return None
        self._reply.close()
        if not message:
            raise RuntimeError(f"fork server: gone before pid {self.pid} ended ({self._server})")
        answer = json.loads(message)
        self._server.charge(answer["cpu"])
        self.returncode = os.waitstatus_to_exitcode(answer["status"])
        return self.returncode

    def poll(self) -> int | None:
        return self._collect(0)

    def wait(self, timeout: float | None = None) -> int:
        code = self._collect(timeout)
        if code is None:
            raise subprocess.TimeoutExpired(f"forked pid {self.pid}", timeout or 0)
        return code

    def send_signal(self, signum: int) -> None:
        if self.returncode is None:  # not yet reaped by the server: the pid is still ours
            os.kill(self.pid, signum)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def communicate(self, timeout: float | None = None) -> tuple[Any, Any]:
        """Read the pipes (stdout, stderr) to their end, then wait; like Popen's."""
        deadline = None if timeout is None else time.monotonic() + timeout
        streams = {n: s for n, s in (("stdout", self.stdout), ("stderr", self.stderr)) if s}
        chunks: dict[str, list[bytes]] = {name: [] for name in streams}
        with selectors.DefaultSelector() as selector:
            for name, stream in streams.items():
                selector.register(stream.fileno(), selectors.EVENT_READ, name)
            while selector.get_map():
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    self.kill()
                    self.wait()
                    raise subprocess.TimeoutExpired(f"forked pid {self.pid}", timeout or 0)
                for key, _ in selector.select(left):
                    data = os.read(key.fd, 1 << 16)
                    if data:
                        chunks[key.data].append(data)
                    else:
                        selector.unregister(key.fd)
        left = None if deadline is None else max(deadline - time.monotonic(), 0.001)
        self.wait(left)
        results: dict[str, Any] = {}
        for name, stream in streams.items():
            data = b"".join(chunks[name])
            results[name] = data.decode() if isinstance(stream, io.TextIOBase) else data
            stream.close()
        return results.get("stdout"), results.get("stderr")


class ForkServer:
    """The client in the test process: ``popen``/``run`` a forked ``cosmo-runner ARGS``."""

    def __init__(self, work: Path) -> None:
        """``work``: an empty folder for the server's log and its warm-up run."""
        from tests.triage.conftest import validators_only_spec

        spec = validators_only_spec(work / "warm-up-spec")
        log = work / "server.log"
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        script = Path(sys.executable).parent / "cosmo-runner"
        env = {k: v for k, v in os.environ.items() if k not in ("COSMO_MANIFEST", "PYTHONPATH")}
        with log.open("wb") as errors:
            self.process = subprocess.Popen(
                [sys.executable, __file__, str(child.fileno()), str(script), str(spec)],
                pass_fds=[child.fileno()],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=errors,
                stderr=errors,
            )
        child.close()
        self.control = parent
        self.log = log
        self.charged = 0.0  # CPU of children charged to tests so far

    def popen(
        self,
        args: list[str | Path],
        *,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
        stdin: int | IO[Any] | None = None,
        stdout: int | IO[Any] | None = None,
        stderr: int | IO[Any] | None = None,
        text: bool = False,
        gate: str = "reused",
        prelude: str | None = None,
        prelude_args: dict[str, Any] | None = None,
    ) -> ForkedProcess:
        """Like ``Popen([cosmo-runner, *args], ...)``: ``stdout``/``stderr`` ``PIPE``, a
        descriptor or file, ``None`` (this process's), or :data:`CLOSED`; ``env`` is added
        to this process's environment (without ``COSMO_MANIFEST``), as :func:`run_cli` does.
        ``prelude``: ``"module:function"`` called with ``prelude_args`` in the child just
        before ``main()`` (test hooks)."""
        from tests.conftest import INTERPRETER_VARIABLES

        assert gate in ("reused", "fresh"), gate
        for name in env or {}:
            assert name == "PYTHONPATH" or name not in INTERPRETER_VARIABLES | _LOCALE, (
                f"{name} acts at interpreter start: use run_cli"
            )
        full_env = {k: v for k, v in os.environ.items() if k != "COSMO_MANIFEST"}
        full_env.update(env or {})
        stdio = _Stdio(text)
        for name, given in (("stdin", stdin), ("stdout", stdout), ("stderr", stderr)):
            stdio.add(name, given)
        sent, ours, pipes, layout = stdio.sent, stdio.ours, stdio.pipes, stdio.layout
        reply, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        request = {
            "args": [str(a) for a in args],
            "cwd": str(cwd or Path.cwd()),
            "env": full_env,
            "umask": _umask(),
            "stdio": layout,
            "gate": gate,
            "prelude": prelude,
            "prelude_args": prelude_args or {},
        }
        try:
            socket.send_fds(self.control, [json.dumps(request).encode()], [theirs.fileno(), *sent])
            answer = json.loads(reply.recv(1 << 16) or b'{"error": "it is gone"}')
        except OSError as exc:
            answer = {"error": f"it is gone ({exc})"}
        finally:
            theirs.close()
            for fd in ours:
                os.close(fd)
        if "error" in answer:
            reply.close()
            tail = self.log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"fork server: {answer['error']}; its log {self.log}:\n{tail}")
        self.charge(answer["cpu"])  # the server's warm-up for this request
        return ForkedProcess(self, answer["pid"], reply, pipes)

    def charge(self, cpu: float) -> None:
        """CPU the server spent for the running test (a child's, reported when it was
        reaped, or the warm-up of its gate): counted to the test; the server is not ours to
        wait for until the session ends."""
        from tests import cputime

        cputime.charge(cpu)
        self.charged += cpu

    def __repr__(self) -> str:
        return f"ForkServer(pid {self.process.pid}, log {self.log})"

    def run(
        self,
        *args: str | Path,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
        timeout: float = 120,
        gate: str = "reused",
    ) -> subprocess.CompletedProcess[str]:
        """``cosmo-runner ARGS`` forked, output captured: like :func:`tests.conftest.run_cli`."""
        process = self.popen(
            list(args),
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            gate=gate,
        )
        out, err = process.communicate(timeout=timeout)
        return subprocess.CompletedProcess([str(a) for a in args], process.wait(), out, err)

    def close(self) -> None:
        """Stop the server and wait for it; its children's CPU was charged already."""
        self.control.close()
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        from tests import cputime

        cputime.charge(-self.charged)  # now counted again with the server's own usage


class _Stdio:
    """The child's descriptors 0-2: what to send, what was opened here, the pipes' ends."""

    def __init__(self, text: bool) -> None:
        self.text = text
        self.sent: list[int] = []
        self.ours: list[int] = []  # opened here for the child, closed once sent
        self.pipes: dict[str, IO[Any] | None] = {"stdout": None, "stderr": None}
        self.layout: list[int] = []  # per descriptor: CLOSED or its index in ``sent``

    def add(self, name: str, given: int | IO[Any] | None) -> None:
        if given == CLOSED:
            self.layout.append(CLOSED)
            return
        if given == subprocess.PIPE:
            if name == "stdin":
                raise NotImplementedError("stdin=PIPE")
            read_end, fd = os.pipe()
            self.pipes[name] = open(read_end, "r" if self.text else "rb")  # noqa: SIM115
            self.ours.append(fd)
        elif given == subprocess.DEVNULL:
            fd = os.open(os.devnull, os.O_RDONLY if name == "stdin" else os.O_WRONLY)
            self.ours.append(fd)
        elif given is None:  # this process's own, as Popen inherits it
            fd = ("stdin", "stdout", "stderr").index(name)
        elif isinstance(given, int):
            fd = given
        else:
            fd = given.fileno()
        self.layout.append(len(self.sent))
        self.sent.append(fd)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


if __name__ == "__main__":
    sys.path[0] = str(Path(__file__).resolve().parents[1])  # for tests.gates, then dropped
    _serve_forever(int(sys.argv[1]), sys.argv[2], sys.argv[3])
