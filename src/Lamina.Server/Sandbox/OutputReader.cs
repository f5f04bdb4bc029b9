using System.Runtime.InteropServices;
using System.Text;

namespace Lamina.Server.Sandbox;

/// <summary>
/// One thread reads the stdout/stderr pipes of every sandbox (poll(2)) and hands the output on line by line.
/// Reading and delivering happen under the stream's lock, so <see cref="OutputStream.Drain"/> can make sure that
/// everything the runtime wrote before it answered an invocation is in the log — one FIONREAD, no sleep.
/// </summary>
internal sealed class OutputReader : IDisposable
{
    private readonly Lock _lock = new();
    private readonly List<OutputStream> _streams = [];
    private readonly int _wakeRead;
    private readonly int _wakeWrite;
    private readonly Thread _thread;
    private volatile bool _disposed;

    public OutputReader()
    {
        Span<int> fds = stackalloc int[2];
        if (Native.pipe2(fds, Native.O_CLOEXEC | Native.O_NONBLOCK) != 0)
        {
            throw new IOException($"pipe2 failed: {Native.LastError()}");
        }
        _wakeRead = fds[0];
        _wakeWrite = fds[1];
        _thread = new Thread(Run) { IsBackground = true, Name = "lamina-output" };
        _thread.Start();
    }

    /// <summary>Starts reading the pipe <paramref name="owner"/> holds; it is closed at end of file (<see cref="OutputStream.Completion"/>).</summary>
    public OutputStream Add(SafeHandle owner, Action<string> onLine)
    {
        var stream = new OutputStream(owner, onLine);
        lock (_lock)
        {
            _streams.Add(stream);
        }
        Wake();
        return stream;
    }

    public void Dispose()
    {
        _disposed = true;
        Wake();
        _thread.Join();
        Native.close(_wakeRead);
        Native.close(_wakeWrite);
    }

    private unsafe void Wake()
    {
        byte b = 1;
        Native.write(_wakeWrite, &b, 1);
    }

    private unsafe void Run()
    {
        var snapshot = new List<OutputStream>();
        var polls = new Native.PollFd[16];
        var scratch = new byte[64];
        while (!_disposed)
        {
            lock (_lock)
            {
                snapshot.Clear();
                snapshot.AddRange(_streams);
            }
            if (polls.Length < snapshot.Count + 1)
            {
                polls = new Native.PollFd[(snapshot.Count + 1) * 2];
            }
            polls[0] = new Native.PollFd { Fd = _wakeRead, Events = Native.POLLIN };
            for (var i = 0; i < snapshot.Count; i++)
            {
                polls[i + 1] = new Native.PollFd { Fd = snapshot[i].Fd, Events = Native.POLLIN };
            }

            int ready;
            fixed (Native.PollFd* p = polls)
            {
                ready = Native.poll(p, (nuint)(snapshot.Count + 1), -1);
            }
            if (ready < 0)
            {
                continue; // EINTR
            }
            if (polls[0].Revents != 0)
            {
                fixed (byte* s = scratch)
                {
                    while (Native.read(_wakeRead, s, scratch.Length) > 0)
                    {
                    }
                }
            }
            for (var i = 0; i < snapshot.Count; i++)
            {
                if (polls[i + 1].Revents == 0)
                {
                    continue;
                }
                if (!snapshot[i].ReadAvailable())
                {
                    lock (_lock)
                    {
                        _streams.Remove(snapshot[i]);
                    }
                }
            }
        }
    }
}

/// <summary>One output pipe of one sandbox.</summary>
internal sealed class OutputStream
{
    /// <summary>Lambda cuts log records at 256 KB; longer output without a newline becomes several records.</summary>
    public const int MaxLineBytes = 256 * 1024;

    private readonly SafeHandle _owner;
    private readonly Action<string> _onLine;
    private readonly Lock _lock = new();
    private readonly byte[] _pending = new byte[MaxLineBytes];
    private readonly byte[] _buffer = new byte[16 * 1024];
    private readonly TaskCompletionSource _completion = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private int _pendingLength;
    private bool _closed;

    internal OutputStream(SafeHandle owner, Action<string> onLine)
    {
        _owner = owner;
        _onLine = onLine;
        Fd = (int)owner.DangerousGetHandle();
        var flags = Native.fcntl(Fd, Native.F_GETFL, 0);
        Native.fcntl(Fd, Native.F_SETFL, flags | Native.O_NONBLOCK);
    }

    internal int Fd { get; }

    /// <summary>Completes at end of file: every process holding the pipe has exited.</summary>
    public Task Completion => _completion.Task;

    /// <summary>Delivers everything written so far, including a partial last line if <paramref name="flushPartialLine"/>.</summary>
    public void Drain(bool flushPartialLine)
    {
        ReadAvailable();
        FlushPartialLine(flushPartialLine);
    }

    /// <summary>
    /// <see cref="Drain(bool)"/> of a sandbox's two pipes with one poll(2), which after a warm invoke usually says that neither
    /// holds anything: one system call instead of a read of each (issue #19).
    /// </summary>
    public static unsafe void DrainBoth(OutputStream first, OutputStream second, bool flushPartialLines)
    {
        var polls = stackalloc Native.PollFd[2];
        // A closed stream's descriptor is gone (its number may be reused): -1 is ignored by poll.
        polls[0] = new Native.PollFd { Fd = Volatile.Read(ref first._closed) ? -1 : first.Fd, Events = Native.POLLIN };
        polls[1] = new Native.PollFd { Fd = Volatile.Read(ref second._closed) ? -1 : second.Fd, Events = Native.POLLIN };
        var ready = Native.poll(polls, 2, 0);
        if (ready != 0)
        {
            // Readable, at end of file, or poll failed (then read both, as Drain would).
            if (ready < 0 || polls[0].Revents != 0)
            {
                first.ReadAvailable();
            }
            if (ready < 0 || polls[1].Revents != 0)
            {
                second.ReadAvailable();
            }
        }
        first.FlushPartialLine(flushPartialLines);
        second.FlushPartialLine(flushPartialLines);
    }

    private void FlushPartialLine(bool flush)
    {
        if (!flush)
        {
            return;
        }
        lock (_lock)
        {
            if (_pendingLength > 0)
            {
                EmitPending();
            }
        }
    }

    /// <summary>Reads what the pipe holds right now. Returns false once the pipe is at end of file.</summary>
    internal unsafe bool ReadAvailable()
    {
        lock (_lock)
        {
            if (_closed)
            {
                return false;
            }
            while (true)
            {
                nint read;
                fixed (byte* b = _buffer)
                {
                    read = Native.read(Fd, b, _buffer.Length);
                }
                if (read > 0)
                {
                    Deliver(_buffer.AsSpan(0, (int)read));
                    continue;
                }
                if (read < 0)
                {
                    var errno = Marshal.GetLastPInvokeError();
                    if (errno == Native.EINTR)
                    {
                        continue;
                    }
                    if (errno == Native.EAGAIN)
                    {
                        return true;
                    }
                }
                // End of file (or a broken descriptor): flush and close.
                if (_pendingLength > 0)
                {
                    EmitPending();
                }
                _closed = true;
                _owner.Dispose();
                _completion.TrySetResult();
                return false;
            }
        }
    }

    private void Deliver(ReadOnlySpan<byte> data)
    {
        while (!data.IsEmpty)
        {
            var newline = data.IndexOf((byte)'\n');
            var chunk = newline >= 0 ? data[..newline] : data;
            var room = _pending.Length - _pendingLength;
            if (chunk.Length > room)
            {
                chunk[..room].CopyTo(_pending.AsSpan(_pendingLength));
                _pendingLength += room;
                EmitPending();
                data = data[room..];
                continue;
            }
            chunk.CopyTo(_pending.AsSpan(_pendingLength));
            _pendingLength += chunk.Length;
            if (newline < 0)
            {
                return;
            }
            EmitPending();
            data = data[(newline + 1)..];
        }
    }

    private void EmitPending()
    {
        var line = Encoding.UTF8.GetString(_pending, 0, _pendingLength);
        _pendingLength = 0;
        _onLine(line);
    }
}
