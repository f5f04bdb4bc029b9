using System.Buffers;
using System.Buffers.Text;
using System.Net.Sockets;
using System.Runtime.CompilerServices;
using System.Text;
using System.Threading.Tasks.Sources;
using Lamina.Server.Invoke;

namespace Lamina.Server.RuntimeApi;

/// <summary>
/// One connection from a sandbox, served without Kestrel for the three requests of a warm invoke: <c>GET
/// /runtime/invocation/next</c> and <c>POST /runtime/invocation/{id}/response|error</c> with a Content-Length body
/// (issue #19). Every other request — the Extensions and Telemetry APIs, init errors, chunked or streamed bodies,
/// <c>Expect</c>, anything this parser does not take as plain, the function's own signed AWS calls — hands the connection
/// to Kestrel for the rest of its life, the bytes read so far first (<see cref="RuntimeApiTransport.HandOff"/>), where
/// <see cref="RuntimeApiEndpoints"/> serves it exactly as before. So this class is a fast path, never a second
/// implementation of the protocol's corners.
/// </summary>
/// <remarks>
/// <para>
/// Why: each Kestrel exchange cost two thread hand-offs (socket → pipe → handler) and a middleware pass, and handing
/// the event to a waiting <c>/next</c> and the response to a waiting caller cost one more each. Here the invoking thread
/// writes the event itself to the connection waiting in <c>/next</c> (<see cref="TryDeliver"/> resumes the loop
/// inline), and the thread that reads the runtime's response runs the caller's continuation inline once it has
/// answered the runtime (<see cref="Invocation.Release"/>).
/// </para>
/// <para>
/// One loop serves the connection, one request at a time and in order (HTTP/1.1 pipelining works: a runtime may send
/// its response and its next <c>/next</c> in one write; the 202 then goes out with the next event, in one write). It
/// waits on one awaitable (<see cref="IValueTaskSource"/>) that three things signal: a receive completed, an invocation
/// was delivered, the environment closed the Runtime API. While <c>/next</c> waits, a receive stays pending so that a
/// runtime going away is noticed and the invocation goes to another connection instead.
/// </para>
/// </remarks>
[System.Diagnostics.CodeAnalysis.SuppressMessage("Design", "CA1001", Justification = "The loop owns the socket and its event args and disposes them when it ends (or hands the socket to Kestrel).")]
internal sealed partial class RuntimeApiConnection : IValueTaskSource
{
    // Request heads are small (GET /next ~100 bytes); the buffer grows for larger ones up to Kestrel's own limit
    // of 32 KB, past which Kestrel takes over (and answers 431).
    private const int InitialBufferSize = 4096;
    private const int MaxHeadBytes = 32 * 1024;

    // Events up to this size are copied behind their head and sent in one write; larger ones are sent as they are.
    private const int CopyPayloadLimit = 16 * 1024;

    private const int Received = 1;
    private const int Delivered = 2;
    private const int Closed = 4;

    // The /next wait: none → waiting → delivered (by Deliver) | closed (by the environment) | abandoned (by the loop).
    private const int NotWaiting = 0;
    private const int Waiting = 1;
    private const int WasDelivered = 2;
    private const int WasClosed = 3;
    private const int Abandoned = 4;

    private static ReadOnlySpan<byte> InvocationPrefix => "/2018-06-01/runtime/invocation/"u8;
    private static ReadOnlySpan<byte> AcceptedResponse => "HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\nContent-Length: 15\r\n\r\n{\"status\":\"OK\"}"u8;

    private readonly Socket _socket;
    private readonly ExecutionEnvironment _environment;
    private readonly RuntimeApiTransport _transport;
    private readonly SocketAsyncEventArgs _receive = new();

    // Received bytes not yet parsed are _buffer[_start.._end].
    private byte[] _buffer = new byte[InitialBufferSize];
    private int _start;
    private int _end;

    // Responses not yet written (rented while there are some).
    private byte[]? _output;
    private int _outputLength;

    private ManualResetValueTaskSourceCore<bool> _core; // continuations run on the signalling thread (see Signal)
    private int _events;
    private int _parked;
    private bool _receivePending;
    private int _waitState;
    private Invocation? _delivered;

    // An invocation this connection claimed for the runtime's answer, released once the answer is on its way.
    private Invocation? _claimed;

    public RuntimeApiConnection(Socket socket, ExecutionEnvironment environment, RuntimeApiTransport transport)
    {
        _socket = socket;
        _environment = environment;
        _transport = transport;
        _receive.Completed += static (_, e) => ((RuntimeApiConnection)e.UserToken!).Signal(Received);
        _receive.UserToken = this;
    }

    public void Start() => _ = RunAsync();

    // ---- the environment's side -----------------------------------------------------------------------------------

    /// <summary>Called by the environment, under its lock, when this connection starts waiting in <c>/next</c>.</summary>
    internal void BeginWait() => Volatile.Write(ref _waitState, Waiting);

    /// <summary>Gives the waiting <c>/next</c> its invocation; false when this connection no longer waits (it went away).</summary>
    internal bool TryDeliver(Invocation invocation)
    {
        _delivered = invocation;
        if (Interlocked.CompareExchange(ref _waitState, WasDelivered, Waiting) != Waiting)
        {
            _delivered = null;
            return false;
        }
        Signal(Delivered); // the loop writes the event, on this thread when it was parked
        return true;
    }

    /// <summary>The environment is shutting down: a waiting <c>/next</c> answers 500, as Kestrel-served ones do.</summary>
    internal void Close()
    {
        if (Interlocked.CompareExchange(ref _waitState, WasClosed, Waiting) == Waiting)
        {
            Signal(Closed);
        }
    }

    // ---- the loop -----------------------------------------------------------------------------------------------

    private async Task RunAsync()
    {
        var handedOff = false;
        try
        {
            while (true)
            {
                int headLength;
                while ((headLength = HeadLength()) < 0)
                {
                    if (_end - _start >= MaxHeadBytes)
                    {
                        handedOff = await HandOffAsync();
                        return;
                    }
                    if (!await ReceiveAsync())
                    {
                        return; // the runtime closed the connection
                    }
                }
                if (!TryParse(_buffer.AsSpan(_start, headLength), out var request))
                {
                    handedOff = await HandOffAsync();
                    return;
                }
                _start += headLength;
                var keepGoing = request.Route == Route.Next ? await NextAsync(request) : await PostAsync(request);
                if (!keepGoing)
                {
                    return;
                }
                if (request.Close)
                {
                    await FlushAsync();
                    return;
                }
            }
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException or IOException)
        {
            // The runtime went away mid-request, or the sandbox was stopped.
        }
        catch (Exception e)
        {
            Log.ConnectionFailed(_transport.Logger, _environment.Id, e);
        }
        finally
        {
            ReleaseClaimed();
            if (Interlocked.CompareExchange(ref _waitState, Abandoned, Waiting) == Waiting)
            {
                _environment.RemoveWaiter(this);
            }
            else if (Volatile.Read(ref _waitState) == WasDelivered && Interlocked.Exchange(ref _delivered, null) is { } orphan)
            {
                _environment.Deliver(orphan); // never written: the next /next gets it
            }
            if (!handedOff)
            {
                _socket.Dispose();
                _receive.Dispose();
            }
            ReturnOutput();
        }
    }

    /// <summary>Serves <c>GET /next</c>. False when the connection is done.</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<bool> NextAsync(Request request)
    {
        if (request.HandlerInitMs is { } handlerInitMs && _environment.ColdStart.HandlerInitMs is null)
        {
            _environment.ColdStart.HandlerInitMs = handlerInitMs;
        }
        switch (_environment.TakeNext(this, out var invocation))
        {
            case NextOutcome.Busy:
                AppendError(403, "Forbidden", "InvalidStateTransition", "An invocation is already in progress in this environment", request.Close);
                await FlushIfIdleAsync();
                return true;
            case NextOutcome.Closed:
                AppendError(500, "Internal Server Error", "InternalServerError", "The execution environment is shutting down", request.Close);
                await FlushIfIdleAsync();
                return true;
            case NextOutcome.Ready:
                return await SendEventAsync(invocation!, request.Close);
        }

        // Waiting. The caller of the invocation this connection just answered may go on now (its environment can
        // take the next invocation, which comes straight here); a pipelined answer's 202 waits for the next event.
        ReleaseClaimed();
        StartBackgroundReceive();
        while (true)
        {
            var events = await WaitForAsync(Delivered | Closed | Received);
            if ((events & Received) != 0 && !TakeReceived())
            {
                // The runtime went away while it waited: nothing may be delivered here any more.
                if ((events & Delivered) == 0 && Interlocked.CompareExchange(ref _waitState, Abandoned, Waiting) == Waiting)
                {
                    _environment.RemoveWaiter(this);
                    return false;
                }
                // An invocation was being delivered meanwhile: it goes back for the next /next, wherever it comes from.
                if ((events & (Delivered | Closed)) == 0)
                {
                    events = await WaitForAsync(Delivered | Closed);
                }
                if ((events & Delivered) != 0)
                {
                    var orphan = _delivered!;
                    _delivered = null;
                    _environment.Deliver(orphan);
                }
                return false;
            }
            if ((events & Delivered) != 0)
            {
                invocation = _delivered!;
                _delivered = null;
                Volatile.Write(ref _waitState, NotWaiting);
                return await SendEventAsync(invocation, request.Close);
            }
            if ((events & Closed) != 0)
            {
                Volatile.Write(ref _waitState, NotWaiting);
                AppendError(500, "Internal Server Error", "InternalServerError", "The execution environment is shutting down", request.Close);
                await FlushAsync();
                return true;
            }
            StartBackgroundReceive(); // bytes came early (a pipelined request): kept for later, and the wait goes on
        }
    }

    /// <summary>Serves <c>POST /invocation/{id}/response|error</c>. False when the connection is done.</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<bool> PostAsync(Request request)
    {
        var length = request.ContentLength;
        var body = length == 0 ? [] : new byte[length];
        var filled = Math.Min(length, _end - _start);
        _buffer.AsSpan(_start, filled).CopyTo(body);
        _start += filled;
        while (filled < length)
        {
            var read = await ReceiveIntoAsync(body, filled, length - filled);
            if (read == 0)
            {
                return false;
            }
            filled += read;
        }

        InvocationResult result;
        if (request.Route == Route.Error)
        {
            var errorType = request.ErrorType;
            result = InvocationResult.FunctionError(body.Length > 0 ? body : RuntimeApiEndpoints.ErrorBody(errorType, ""), errorType);
        }
        else
        {
            result = InvocationResult.Success(body, request.ContentType);
        }
        var requestId = _buffer.AsSpan(request.RequestIdStart, request.RequestIdLength);
        // Request ids are 36 characters; a runtime's absurd one (up to the head's 32 KB) goes to the heap.
        Span<char> id = requestId.Length <= 128 ? stackalloc char[requestId.Length] : new char[requestId.Length];
        Encoding.ASCII.GetChars(requestId, id);
        ReleaseClaimed(); // a previous pipelined answer's caller, if any, first
        switch (_environment.Claim(id, result, out _claimed))
        {
            case RuntimeApiStatus.Accepted:
                Append(AcceptedResponse, request.Close);
                break;
            case RuntimeApiStatus.InvalidRequestId:
                AppendError(400, "Bad Request", "InvalidRequestID", "Invalid request ID", request.Close);
                break;
            default:
                AppendError(403, "Forbidden", "InvalidStateTransition", "No invocation is in progress for this request", request.Close);
                break;
        }
        await FlushIfIdleAsync();
        return true;
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<bool> SendEventAsync(Invocation invocation, bool close)
    {
        invocation.Delivered = true;
        AppendEventHead(invocation, close);
        var payload = invocation.Payload;
        if (payload.Length <= CopyPayloadLimit)
        {
            Append(payload.Span);
            await FlushAsync();
        }
        else
        {
            await FlushAsync();
            await _socket.SendAsync(payload, SocketFlags.None);
        }
        return true;
    }

    // The caller of a claimed invocation goes on, on this thread, once its runtime's answer is written or queued.
    private void ReleaseClaimed()
    {
        var claimed = _claimed;
        if (claimed is not null)
        {
            _claimed = null;
            claimed.Release(inline: true);
        }
    }

    // Responses wait while more requests are already buffered (a pipelined batch goes out in one write).
    private ValueTask FlushIfIdleAsync() => HasCompleteRequest() ? ValueTask.CompletedTask : FlushAsync();

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask FlushAsync()
    {
        if (_outputLength == 0)
        {
            return;
        }
        var length = _outputLength;
        _outputLength = 0;
        await _socket.SendAsync(_output.AsMemory(0, length), SocketFlags.None);
        ReturnOutput();
    }

    private void ReturnOutput()
    {
        if (_output is not null && _outputLength == 0)
        {
            ArrayPool<byte>.Shared.Return(_output);
            _output = null;
        }
    }

    /// <summary>Hands the connection to Kestrel with what it has read and not served; answers queued so far go first.</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<bool> HandOffAsync()
    {
        System.Diagnostics.Debug.Assert(!_receivePending, "a receive is pending: it would take bytes from Kestrel");
        ReleaseClaimed();
        await FlushAsync();
        _transport.HandOff(_socket, _buffer.AsMemory(_start, _end - _start).ToArray(), _environment);
        _receive.Dispose();
        return true;
    }

    // ---- receiving ------------------------------------------------------------------------------------------------

    /// <summary>Reads more bytes into the buffer. False when the runtime closed the connection.</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<bool> ReceiveAsync()
    {
        // About to wait for the runtime: whatever it is owed goes out first, then the caller it answered goes on.
        await FlushAsync();
        ReleaseClaimed();
        if (!_receivePending)
        {
            MakeRoom();
            StartReceive(_buffer, _end, _buffer.Length - _end);
        }
        while (_receivePending)
        {
            await WaitForAsync(Received);
            _receivePending = false;
        }
        return TakeReceived();
    }

    /// <summary>Reads body bytes straight into <paramref name="target"/>; 0 when the runtime closed the connection.</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<int> ReceiveIntoAsync(byte[] target, int offset, int count)
    {
        if (!StartReceive(target, offset, count))
        {
            await WaitForAsync(Received);
            _receivePending = false;
        }
        return _receive.SocketError == SocketError.Success ? _receive.BytesTransferred : 0;
    }

    // While /next waits: a receive stays pending so that a runtime that goes away is noticed. Only into an empty
    // buffer, so that a receive is never pending when the loop parses (or hands the connection over).
    private void StartBackgroundReceive()
    {
        if (_receivePending || _end > _start)
        {
            return;
        }
        MakeRoom();
        if (StartReceive(_buffer, _end, _buffer.Length - _end))
        {
            Signal(Received); // completed at once: the wait loop takes it
        }
    }

    /// <summary>Starts a receive; true when it completed at once (its result is in <see cref="_receive"/>).</summary>
    private bool StartReceive(byte[] target, int offset, int count)
    {
        _receive.SetBuffer(target, offset, count);
        _receivePending = true;
        if (_socket.ReceiveAsync(_receive))
        {
            return false;
        }
        _receivePending = false;
        return true;
    }

    /// <summary>Takes a finished receive into the buffer; false when the runtime closed the connection.</summary>
    private bool TakeReceived()
    {
        _receivePending = false;
        if (_receive.SocketError != SocketError.Success || _receive.BytesTransferred == 0)
        {
            return false;
        }
        _end += _receive.BytesTransferred;
        return true;
    }

    private void MakeRoom()
    {
        if (_start == _end)
        {
            _start = _end = 0;
        }
        if (_end < _buffer.Length)
        {
            return;
        }
        if (_start > 0)
        {
            _buffer.AsSpan(_start, _end - _start).CopyTo(_buffer);
            _end -= _start;
            _start = 0;
            return;
        }
        Array.Resize(ref _buffer, Math.Min(_buffer.Length * 2, MaxHeadBytes));
    }

    // ---- waiting: one awaitable, three signals --------------------------------------------------------------------

    /// <summary>Waits until one of <paramref name="mask"/>'s events happened and takes it (others stay for later).</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<int> WaitForAsync(int mask)
    {
        while (true)
        {
            var events = Interlocked.And(ref _events, ~mask) & mask;
            if (events != 0)
            {
                return events;
            }
            await ParkAsync(mask);
        }
    }

    private ValueTask ParkAsync(int mask)
    {
        _core.Reset();
        Interlocked.Exchange(ref _parked, 1);
        if ((Volatile.Read(ref _events) & mask) != 0 && Interlocked.Exchange(ref _parked, 0) == 1)
        {
            return ValueTask.CompletedTask;
        }
        return new ValueTask(this, _core.Version);
    }

    /// <summary>
    /// Records an event and resumes the parked loop on this thread: the thread that delivers an invocation writes it
    /// to the runtime itself, the thread that received the runtime's answer goes on with it.
    /// </summary>
    private void Signal(int eventFlag)
    {
        Interlocked.Or(ref _events, eventFlag);
        if (Interlocked.Exchange(ref _parked, 0) == 1)
        {
            _core.SetResult(true);
        }
    }

    void IValueTaskSource.GetResult(short token) => _core.GetResult(token);

    ValueTaskSourceStatus IValueTaskSource.GetStatus(short token) => _core.GetStatus(token);

    void IValueTaskSource.OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
        _core.OnCompleted(continuation, state, token, flags);

    // ---- writing ----------------------------------------------------------------------------------------------------

    private void AppendEventHead(Invocation invocation, bool close)
    {
        Append("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "u8);
        AppendNumber(invocation.Payload.Length);
        Append("\r\nLambda-Runtime-Aws-Request-Id: "u8);
        AppendHeaderValue(invocation.RequestId);
        Append("\r\nLambda-Runtime-Deadline-Ms: "u8);
        AppendNumber(invocation.DeadlineMs);
        Append("\r\nLambda-Runtime-Invoked-Function-Arn: "u8);
        AppendHeaderValue(invocation.InvokedFunctionArn);
        Append("\r\nLambda-Runtime-Trace-Id: "u8);
        AppendHeaderValue(invocation.TraceId);
        if (invocation.ClientContext is not null)
        {
            Append("\r\nLambda-Runtime-Client-Context: "u8);
            AppendHeaderValue(invocation.ClientContext);
        }
        Append(close ? "\r\nConnection: close\r\n\r\n"u8 : "\r\n\r\n"u8);
    }

    private void AppendError(int status, string reason, string errorType, string message, bool close)
    {
        var body = RuntimeApiEndpoints.ErrorBody(errorType, message);
        Append("HTTP/1.1 "u8);
        AppendNumber(status);
        Append(" "u8);
        AppendHeaderValue(reason);
        Append("\r\nContent-Type: application/json\r\nContent-Length: "u8);
        AppendNumber(body.Length);
        Append(close ? "\r\nConnection: close\r\n\r\n"u8 : "\r\n\r\n"u8);
        Append(body);
    }

    private void Append(ReadOnlySpan<byte> bytes, bool close)
    {
        if (!close)
        {
            Append(bytes);
            return;
        }
        // The fixed 202: its head gets the Connection header.
        var headEnd = bytes.IndexOf("\r\n\r\n"u8);
        Append(bytes[..headEnd]);
        Append("\r\nConnection: close\r\n\r\n"u8);
        Append(bytes[(headEnd + 4)..]);
    }

    private void Append(ReadOnlySpan<byte> bytes)
    {
        bytes.CopyTo(Reserve(bytes.Length));
        _outputLength += bytes.Length;
    }

    private void AppendNumber(long value)
    {
        Utf8Formatter.TryFormat(value, Reserve(20), out var written);
        _outputLength += written;
    }

    // Header values are the server's own (ids, ARNs, trace headers) or a client context that was checked to be JSON,
    // where control characters can only be whitespace between tokens: written as spaces, they cannot end the header.
    private void AppendHeaderValue(string value)
    {
        var span = Reserve(Encoding.UTF8.GetMaxByteCount(value.Length));
        var written = Encoding.UTF8.GetBytes(value, span);
        foreach (ref var b in span[..written])
        {
            if (b < 0x20 || b == 0x7f)
            {
                b = (byte)' ';
            }
        }
        _outputLength += written;
    }

    private Span<byte> Reserve(int count)
    {
        if (_output is null)
        {
            _output = ArrayPool<byte>.Shared.Rent(Math.Max(count, 1024));
        }
        else if (_output.Length - _outputLength < count)
        {
            var larger = ArrayPool<byte>.Shared.Rent(Math.Max(_output.Length * 2, _outputLength + count));
            _output.AsSpan(0, _outputLength).CopyTo(larger);
            ArrayPool<byte>.Shared.Return(_output);
            _output = larger;
        }
        return _output.AsSpan(_outputLength, count);
    }

    // ---- parsing ------------------------------------------------------------------------------------------------------

    private enum Route
    {
        Next,
        Response,
        Error,
    }

    /// <summary>A request this class serves; the request id is a range of the buffer (valid until the next receive).</summary>
    private readonly record struct Request(Route Route, int ContentLength, bool Close, string? ContentType, string? ErrorType,
        double? HandlerInitMs, int RequestIdStart, int RequestIdLength);

    /// <summary>Bytes of the first request head in the buffer (through its empty line), or -1 while it is incomplete.</summary>
    private int HeadLength()
    {
        var end = _buffer.AsSpan(_start, _end - _start).IndexOf("\r\n\r\n"u8);
        return end < 0 ? -1 : end + 4;
    }

    private bool HasCompleteRequest()
    {
        var head = HeadLength();
        if (head < 0)
        {
            return false;
        }
        // A pipelined request counts once its body is in too (GET /next has none).
        return !TryParse(_buffer.AsSpan(_start, head), out var request) || _end - _start - head >= request.ContentLength;
    }

    /// <summary>
    /// Parses one request head (request line, header lines, empty line) if it is one this class serves, in the plain
    /// form the runtimes send: HTTP/1.1, an origin-form path without query or escapes, a Host header, at most a
    /// Content-Length body within the response limit, no Transfer-Encoding, Expect or response streaming. Anything
    /// else is Kestrel's (false).
    /// </summary>
    private bool TryParse(ReadOnlySpan<byte> head, out Request request)
    {
        request = default;
        var lineEnd = head.IndexOf("\r\n"u8);
        var line = head[..lineEnd];
        Route route;
        var idStart = 0;
        var idLength = 0;
        if (line.SequenceEqual("GET /2018-06-01/runtime/invocation/next HTTP/1.1"u8))
        {
            route = Route.Next;
        }
        else if (line.StartsWith("POST "u8) && line.EndsWith(" HTTP/1.1"u8) && line[5..^9].StartsWith(InvocationPrefix))
        {
            var rest = line[(5 + InvocationPrefix.Length)..^9];
            var slash = rest.IndexOf((byte)'/');
            if (slash <= 0)
            {
                return false;
            }
            var action = rest[(slash + 1)..];
            route = action.SequenceEqual("response"u8) ? Route.Response : action.SequenceEqual("error"u8) ? Route.Error : (Route)(-1);
            if (route < 0)
            {
                return false;
            }
            var id = rest[..slash];
            foreach (var b in id)
            {
                // Request ids are the server's own (UUIDs); anything escaped or unusual takes Kestrel's decoding.
                if (b is <= 0x20 or >= 0x7f or (byte)'%' or (byte)'?' or (byte)'#')
                {
                    return false;
                }
            }
            idStart = _start + 5 + InvocationPrefix.Length;
            idLength = slash;
        }
        else
        {
            return false;
        }

        var contentLength = -1;
        var close = false;
        var host = false;
        string? contentType = null;
        string? errorType = null;
        double? handlerInitMs = null;
        var headers = head[(lineEnd + 2)..^2]; // each line ends with CRLF; the final empty line is cut off
        while (!headers.IsEmpty)
        {
            lineEnd = headers.IndexOf("\r\n"u8);
            line = headers[..lineEnd];
            headers = headers[(lineEnd + 2)..];
            var colon = line.IndexOf((byte)':');
            if (colon <= 0 || line.IndexOfAny((byte)'\r', (byte)'\n', (byte)0) >= 0)
            {
                return false;
            }
            var name = line[..colon];
            foreach (var b in name)
            {
                if (b is <= 0x20 or >= 0x7f)
                {
                    return false; // not a token (whitespace before the colon, obsolete folding…)
                }
            }
            var value = line[(colon + 1)..].Trim(" \t"u8);
            if (Ascii.EqualsIgnoreCase(name, "Content-Length"u8))
            {
                if (contentLength >= 0 || !Utf8Parser.TryParse(value, out int parsed, out var consumed) || consumed != value.Length || parsed < 0
                    || parsed > ExecutionEnvironment.MaxResponseBytes)
                {
                    return false; // repeated, malformed or too large: Kestrel answers (413 for the last)
                }
                contentLength = parsed;
            }
            else if (Ascii.EqualsIgnoreCase(name, "Host"u8))
            {
                host = true;
            }
            else if (Ascii.EqualsIgnoreCase(name, "Connection"u8))
            {
                if (Ascii.EqualsIgnoreCase(value, "close"u8))
                {
                    close = true;
                }
                else if (!Ascii.EqualsIgnoreCase(value, "keep-alive"u8))
                {
                    return false;
                }
            }
            else if (Ascii.EqualsIgnoreCase(name, "Content-Type"u8))
            {
                contentType = value.SequenceEqual("application/json"u8) ? InvocationResult.JsonContentType : Encoding.Latin1.GetString(value);
            }
            else if (Ascii.EqualsIgnoreCase(name, "Lambda-Runtime-Function-Error-Type"u8))
            {
                errorType = value.IsEmpty ? null : Encoding.UTF8.GetString(value);
            }
            else if (Ascii.EqualsIgnoreCase(name, "Lamina-Handler-Init-Ms"u8))
            {
                if (Utf8Parser.TryParse(value, out double ms, out var consumed) && consumed == value.Length && ms is >= 0 and < 3_600_000)
                {
                    handlerInitMs = ms;
                }
            }
            else if (Ascii.EqualsIgnoreCase(name, "Transfer-Encoding"u8) || Ascii.EqualsIgnoreCase(name, "Expect"u8)
                || Ascii.EqualsIgnoreCase(name, "Lambda-Runtime-Function-Response-Mode"u8) || Ascii.EqualsIgnoreCase(name, "Upgrade"u8))
            {
                return false;
            }
        }
        if (!host || (route == Route.Next && contentLength > 0))
        {
            return false;
        }
        request = new Request(route, Math.Max(contentLength, 0), close, contentType, errorType, handlerInitMs, idStart, idLength);
        return true;
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = Diagnostics.EventIds.RuntimeApiConnectionFailed, Level = LogLevel.Error, Message = "A Runtime API connection of environment {Environment} failed")]
        public static partial void ConnectionFailed(ILogger logger, string environment, Exception exception);
    }
}
