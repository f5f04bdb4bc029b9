using System.Text.Json;
using System.Threading.Channels;

namespace Lamina.Server.Invoke;

/// <summary>
/// The extensions registered in one environment (Extensions API 2020-01-01, LAMBDA.md §6): registration during
/// Init, INVOKE and SHUTDOWN events, and the bookkeeping that ends phases — Init ends when every extension has
/// asked for its first event, an invocation ends when every INVOKE subscriber has asked for the next one.
/// </summary>
internal sealed class ExtensionSet
{
    /// <summary>Lambda allows 10 extensions per function.</summary>
    public const int MaxExtensions = 10;

    private readonly Lock _lock = new();
    private readonly List<Extension> _extensions = [];
    private TaskCompletionSource _settled = NewSignal();
    private int _expected = -1;
    private bool _registrationClosed;

    private volatile int _count;

    public int Count => _count;

    /// <summary>Cheap enough for the warm path: no lock.</summary>
    public bool Any => _count > 0;

    public bool AnySubscribedToShutdown
    {
        get
        {
            lock (_lock)
            {
                return _extensions.Exists(e => e.WantsShutdown);
            }
        }
    }

    public IReadOnlyList<string> Names
    {
        get
        {
            lock (_lock)
            {
                return _extensions.ConvertAll(e => e.Name);
            }
        }
    }

    /// <summary><c>POST /extension/register</c>. Returns the extension, or the error type and message to answer with.</summary>
    public Extension? Register(string name, IReadOnlyList<string> events, out string? errorType, out string? errorMessage)
    {
        errorType = errorMessage = null;
        foreach (var e in events)
        {
            if (e is not ("INVOKE" or "SHUTDOWN"))
            {
                errorType = "Extension.InvalidEventType";
                errorMessage = $"Invalid event type: {e}";
                return null;
            }
        }
        lock (_lock)
        {
            if (_registrationClosed)
            {
                errorType = "Extension.RegistrationClosed";
                errorMessage = "Extensions can register only during the Init phase";
                return null;
            }
            if (_extensions.Count >= MaxExtensions)
            {
                errorType = "Extension.TooManyExtensions";
                errorMessage = $"At most {MaxExtensions} extensions can register";
                return null;
            }
            if (_extensions.Exists(e => e.Name == name))
            {
                errorType = "Extension.InvalidExtensionName";
                errorMessage = $"An extension named {name} is already registered";
                return null;
            }
            var extension = new Extension(this, Guid.NewGuid().ToString(), name, events.Contains("INVOKE"), events.Contains("SHUTDOWN"));
            _extensions.Add(extension);
            _count = _extensions.Count;
            CheckSettledLocked();
            return extension;
        }
    }

    public Extension? Find(string identifier)
    {
        lock (_lock)
        {
            return _extensions.Find(e => e.Id == identifier);
        }
    }

    /// <summary>Waits until <paramref name="expected"/> extensions have registered; then registration closes.</summary>
    public Task WaitRegisteredAsync(int expected, CancellationToken cancellationToken)
    {
        lock (_lock)
        {
            _expected = expected;
            CheckSettledLocked();
        }
        return WaitSettledAsync(cancellationToken);
    }

    /// <summary>Closes registration (the runtime started) without waiting.</summary>
    public void CloseRegistration()
    {
        lock (_lock)
        {
            _registrationClosed = true;
            CheckSettledLocked();
        }
    }

    /// <summary>Completes when every registered extension is waiting for its next event (no event outstanding).</summary>
    public async Task WaitSettledAsync(CancellationToken cancellationToken)
    {
        while (true)
        {
            Task signal;
            lock (_lock)
            {
                if (IsSettledLocked())
                {
                    return;
                }
                signal = _settled.Task;
            }
            await signal.WaitAsync(cancellationToken);
        }
    }

    /// <summary>Sends an INVOKE event to every subscriber.</summary>
    public void Invoke(Invocation invocation)
    {
        var body = JsonSerializer.SerializeToUtf8Bytes(new InvokeEvent
        {
            DeadlineMs = invocation.DeadlineMs,
            RequestId = invocation.RequestId,
            InvokedFunctionArn = invocation.InvokedFunctionArn,
            Tracing = new TracingInfo { Value = invocation.TraceId },
        }, Protocols.LaminaJsonContext.Default.InvokeEvent);
        Dispatch(body, e => e.WantsInvoke);
    }

    /// <summary>Sends a SHUTDOWN event to every subscriber (reason <c>spindown</c>, <c>timeout</c> or <c>failure</c>).</summary>
    public void Shutdown(string reason, long deadlineMs)
    {
        var body = JsonSerializer.SerializeToUtf8Bytes(new ShutdownEvent { DeadlineMs = deadlineMs, ShutdownReason = reason }, Protocols.LaminaJsonContext.Default.ShutdownEvent);
        Dispatch(body, e => e.WantsShutdown);
        lock (_lock)
        {
            foreach (var extension in _extensions)
            {
                extension.Events.Writer.TryComplete();
            }
        }
    }

    private void Dispatch(byte[] body, Predicate<Extension> subscribed)
    {
        lock (_lock)
        {
            foreach (var extension in _extensions)
            {
                if (subscribed(extension) && !extension.Failed)
                {
                    extension.Dispatched++;
                    extension.Events.Writer.TryWrite(body);
                }
            }
        }
    }

    internal void OnNext(Extension extension)
    {
        lock (_lock)
        {
            extension.CalledNext = true;
            extension.Acknowledged = extension.Delivered; // Asking for the next event finishes the previous one.
            CheckSettledLocked();
        }
    }

    internal void OnDelivered(Extension extension)
    {
        lock (_lock)
        {
            extension.Delivered++;
        }
    }

    internal void OnFailed(Extension extension)
    {
        lock (_lock)
        {
            extension.Failed = true;
            CheckSettledLocked();
        }
    }

    // Settled: registration is over and every extension has acknowledged every event sent to it.
    private bool IsSettledLocked() =>
        (_expected < 0 || _extensions.Count >= _expected || _registrationClosed)
        && _extensions.TrueForAll(e => e.Failed || (e.CalledNext && e.Acknowledged == e.Dispatched));

    private void CheckSettledLocked()
    {
        if (_expected >= 0 && _extensions.Count >= _expected)
        {
            _registrationClosed = true;
        }
        if (IsSettledLocked())
        {
            var settled = _settled;
            _settled = NewSignal();
            settled.TrySetResult();
        }
    }

    private static TaskCompletionSource NewSignal() => new(TaskCreationOptions.RunContinuationsAsynchronously);
}

/// <summary>One registered extension.</summary>
internal sealed class Extension(ExtensionSet owner, string id, string name, bool wantsInvoke, bool wantsShutdown)
{
    public string Id { get; } = id;
    public string Name { get; } = name;
    public bool WantsInvoke { get; } = wantsInvoke;
    public bool WantsShutdown { get; } = wantsShutdown;

    /// <summary>Events not yet fetched; unbounded because at most one INVOKE and one SHUTDOWN are ever queued.</summary>
    internal Channel<byte[]> Events { get; } = Channel.CreateUnbounded<byte[]>(new UnboundedChannelOptions { SingleReader = true });

    // Guarded by the owner's lock: events sent, handed out by next, and finished (next called again).
    internal bool CalledNext;
    internal bool Failed;
    internal int Dispatched;
    internal int Delivered;
    internal int Acknowledged;

    /// <summary><c>GET /extension/event/next</c>: acknowledges the previous event, then waits for the next.</summary>
    public async ValueTask<byte[]?> NextAsync(CancellationToken cancellationToken)
    {
        owner.OnNext(this);
        try
        {
            var body = await Events.Reader.ReadAsync(cancellationToken);
            owner.OnDelivered(this);
            return body;
        }
        catch (ChannelClosedException)
        {
            return null;
        }
    }

    public void Fail() => owner.OnFailed(this);
}

internal sealed class InvokeEvent
{
    [System.Text.Json.Serialization.JsonPropertyName("eventType")]
    public string EventType { get; init; } = "INVOKE";

    [System.Text.Json.Serialization.JsonPropertyName("deadlineMs")]
    public long DeadlineMs { get; init; }

    [System.Text.Json.Serialization.JsonPropertyName("requestId")]
    public required string RequestId { get; init; }

    [System.Text.Json.Serialization.JsonPropertyName("invokedFunctionArn")]
    public required string InvokedFunctionArn { get; init; }

    [System.Text.Json.Serialization.JsonPropertyName("tracing")]
    public TracingInfo? Tracing { get; init; }
}

internal sealed class TracingInfo
{
    [System.Text.Json.Serialization.JsonPropertyName("type")]
    public string Type { get; init; } = "X-Amzn-Trace-Id";

    [System.Text.Json.Serialization.JsonPropertyName("value")]
    public required string Value { get; init; }
}

internal sealed class ShutdownEvent
{
    [System.Text.Json.Serialization.JsonPropertyName("eventType")]
    public string EventType { get; init; } = "SHUTDOWN";

    [System.Text.Json.Serialization.JsonPropertyName("deadlineMs")]
    public long DeadlineMs { get; init; }

    [System.Text.Json.Serialization.JsonPropertyName("shutdownReason")]
    public required string ShutdownReason { get; init; }
}
