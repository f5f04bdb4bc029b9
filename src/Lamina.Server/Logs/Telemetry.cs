using System.Globalization;
using System.Net.Http.Headers;
using System.Net.Sockets;
using System.Text.Json;
using System.Threading.Channels;

namespace Lamina.Server.Logs;

/// <summary>
/// Telemetry API 2022-07-01 subscriptions of one environment: extensions subscribe an HTTP listener inside the
/// sandbox (<c>http://sandbox.localdomain:PORT/…</c>) to <c>platform</c>, <c>function</c> and <c>extension</c>
/// records, and get them POSTed in batches as JSON arrays of <c>{time, type, record}</c> — bounded by
/// <c>maxItems</c>, <c>maxBytes</c> and <c>timeoutMs</c>. Records are queued off the invoke path (bounded; the
/// oldest are dropped when a listener falls behind) and delivered by one loop per subscription.
/// </summary>
internal sealed class Telemetry : IDisposable
{
    /// <summary>Queue bound per subscription; past it the oldest records are dropped.</summary>
    public const int MaxQueuedRecords = 10_000;

    private readonly Func<int, Socket> _connect;
    private readonly TimeProvider _time;
    private readonly Lock _lock = new();
    private readonly CancellationTokenSource _stopped = new();
    private Subscription[] _subscriptions = [];
    private int _disposed;

    /// <param name="connect">Opens a connection to a port on the sandbox's own loopback.</param>
    /// <param name="time">Timestamps of the records.</param>
    public Telemetry(Func<int, Socket> connect, TimeProvider time)
    {
        _connect = connect;
        _time = time;
    }

    public bool HasSubscribers => _subscriptions.Length > 0;

    /// <summary>Adds (or replaces) an extension's subscription. Returns an error message for a bad request.</summary>
    public string? Subscribe(string extension, JsonElement request)
    {
        if (!request.TryGetProperty("destination", out var destination) || !destination.TryGetProperty("URI", out var uriElement)
            || !Uri.TryCreate(uriElement.GetString(), UriKind.Absolute, out var uri) || uri.Scheme != "http")
        {
            return "destination.URI must be an http:// URI on the sandbox (http://sandbox.localdomain:PORT/PATH)";
        }
        if (destination.TryGetProperty("protocol", out var protocol) && protocol.GetString() is { } p && p != "HTTP")
        {
            return $"destination.protocol {p} is not supported; use HTTP";
        }
        if (uri.Host is not ("sandbox.localdomain" or "localhost" or "127.0.0.1" or "sandbox"))
        {
            return "destination.URI must point at the execution environment itself (sandbox.localdomain)";
        }
        var types = new HashSet<string>(StringComparer.Ordinal);
        if (request.TryGetProperty("types", out var list) && list.ValueKind == JsonValueKind.Array)
        {
            foreach (var type in list.EnumerateArray())
            {
                var name = type.GetString() ?? "";
                if (name is not ("platform" or "function" or "extension"))
                {
                    return $"Unknown telemetry type {name}; use platform, function or extension";
                }
                types.Add(name);
            }
        }
        var maxItems = 1000;
        var maxBytes = 256 * 1024;
        var timeoutMs = 1000;
        if (request.TryGetProperty("buffering", out var buffering))
        {
            if (buffering.TryGetProperty("maxItems", out var items) && !(items.TryGetInt32(out maxItems) && maxItems is >= 1000 and <= 10_000))
            {
                return "buffering.maxItems must be between 1000 and 10000";
            }
            if (buffering.TryGetProperty("maxBytes", out var bytes) && !(bytes.TryGetInt32(out maxBytes) && maxBytes is >= 262_144 and <= 1_048_576))
            {
                return "buffering.maxBytes must be between 262144 and 1048576";
            }
            if (buffering.TryGetProperty("timeoutMs", out var timeout) && !(timeout.TryGetInt32(out timeoutMs) && timeoutMs is >= 25 and <= 30_000))
            {
                return "buffering.timeoutMs must be between 25 and 30000";
            }
        }

        var subscription = new Subscription(this, extension, uri, types, maxItems, maxBytes, TimeSpan.FromMilliseconds(timeoutMs));
        lock (_lock)
        {
            foreach (var old in _subscriptions.Where(s => s.Extension == extension))
            {
                old.Dispose();
            }
            _subscriptions = [.. _subscriptions.Where(s => s.Extension != extension), subscription];
        }
        subscription.Start(_stopped.Token);
        Publish("platform.telemetrySubscription", writer =>
        {
            writer.WriteString("name", extension);
            writer.WriteString("state", "Subscribed");
            writer.WriteStartArray("types");
            foreach (var type in types)
            {
                writer.WriteStringValue(type);
            }
            writer.WriteEndArray();
        });
        return null;
    }

    /// <summary>A log line of the function (type <c>function</c>): the record is the line itself.</summary>
    public void PublishLine(string line)
    {
        if (HasSubscribers)
        {
            Enqueue("function", Encode("function", w => w.WriteStringValue(line), isObject: false));
        }
    }

    /// <summary>A log line of an extension (type <c>extension</c>).</summary>
    public void PublishExtensionLine(string line)
    {
        if (HasSubscribers)
        {
            Enqueue("extension", Encode("extension", w => w.WriteStringValue(line), isObject: false));
        }
    }

    /// <summary>A platform event; <paramref name="writeRecord"/> writes the record object's members.</summary>
    public void Publish(string type, Action<Utf8JsonWriter> writeRecord)
    {
        if (HasSubscribers)
        {
            Enqueue("platform", Encode(type, writeRecord, isObject: true));
        }
    }

    /// <summary>Stops delivery (the environment is shutting down). Queued records are dropped.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }
        _stopped.Cancel();
        lock (_lock)
        {
            foreach (var subscription in _subscriptions)
            {
                subscription.Dispose();
            }
            _subscriptions = [];
        }
        _stopped.Dispose();
    }

    private void Enqueue(string category, byte[] record)
    {
        foreach (var subscription in _subscriptions)
        {
            if (subscription.Types.Contains(category))
            {
                subscription.Queue.Writer.TryWrite(record);
            }
        }
    }

    private byte[] Encode(string type, Action<Utf8JsonWriter> writeRecord, bool isObject)
    {
        using var buffer = new MemoryStream(256);
        using (var writer = new Utf8JsonWriter(buffer))
        {
            writer.WriteStartObject();
            writer.WriteString("time", _time.GetUtcNow().UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss.fff'Z'", CultureInfo.InvariantCulture));
            writer.WriteString("type", type);
            writer.WritePropertyName("record");
            if (isObject)
            {
                writer.WriteStartObject();
                writeRecord(writer);
                writer.WriteEndObject();
            }
            else
            {
                writeRecord(writer);
            }
            writer.WriteEndObject();
        }
        return buffer.ToArray();
    }

    private sealed class Subscription(Telemetry owner, string extension, Uri destination, HashSet<string> types, int maxItems, int maxBytes, TimeSpan timeout) : IDisposable
    {
        private readonly CancellationTokenSource _stop = new();

        public string Extension { get; } = extension;

        public HashSet<string> Types { get; } = types;

        public Channel<byte[]> Queue { get; } = Channel.CreateBounded<byte[]>(new BoundedChannelOptions(MaxQueuedRecords)
        {
            FullMode = BoundedChannelFullMode.DropOldest,
            SingleReader = true,
        });

        public void Start(CancellationToken stopped) => _ = DeliverAsync(stopped);

        public void Dispose()
        {
            _stop.Cancel();
            Queue.Writer.TryComplete();
        }

        private async Task DeliverAsync(CancellationToken stopped)
        {
            using var lifetime = CancellationTokenSource.CreateLinkedTokenSource(stopped, _stop.Token);
            var cancellationToken = lifetime.Token;
            using var handler = new SocketsHttpHandler
            {
                // The listener is inside the sandbox: connect from within its network namespace.
                ConnectCallback = (context, _) => ValueTask.FromResult<Stream>(new NetworkStream(owner._connect(context.DnsEndPoint.Port), ownsSocket: true)),
                PooledConnectionIdleTimeout = TimeSpan.FromSeconds(30),
            };
            using var client = new HttpClient(handler) { Timeout = TimeSpan.FromSeconds(10) };
            var batch = new List<byte[]>();
            try
            {
                while (await Queue.Reader.WaitToReadAsync(cancellationToken))
                {
                    // Collect until maxItems / maxBytes, or until timeoutMs after the first record of the batch.
                    var bytes = 0;
                    using var window = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
                    window.CancelAfter(timeout);
                    try
                    {
                        while (batch.Count < maxItems && bytes < maxBytes)
                        {
                            if (!Queue.Reader.TryRead(out var record))
                            {
                                await Queue.Reader.WaitToReadAsync(window.Token);
                                continue;
                            }
                            batch.Add(record);
                            bytes += record.Length + 1;
                        }
                    }
                    catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
                    {
                        // The batching window closed.
                    }
                    await PostAsync(client, batch, cancellationToken);
                    batch.Clear();
                }
            }
            catch (Exception e) when (e is OperationCanceledException or ChannelClosedException)
            {
            }
        }

        private async Task PostAsync(HttpClient client, List<byte[]> batch, CancellationToken cancellationToken)
        {
            if (batch.Count == 0)
            {
                return;
            }
            using var body = new MemoryStream();
            body.WriteByte((byte)'[');
            for (var i = 0; i < batch.Count; i++)
            {
                if (i > 0)
                {
                    body.WriteByte((byte)',');
                }
                body.Write(batch[i]);
            }
            body.WriteByte((byte)']');
            using var content = new ByteArrayContent(body.GetBuffer(), 0, (int)body.Length);
            content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
            try
            {
                using var response = await client.PostAsync(destination, content, cancellationToken);
            }
            catch (Exception e) when (e is HttpRequestException or SocketException or IOException or Sandbox.SandboxException
                || (e is TaskCanceledException && !cancellationToken.IsCancellationRequested))
            {
                // The listener is not there (yet, or any more): this batch is lost, as on Lambda.
            }
        }
    }
}
