using System.Globalization;
using System.Text;

namespace Lamina.Server.Logs;

/// <summary>
/// The log of one environment as Lambda writes it: the function's output lines and the platform's START / END /
/// REPORT lines (LAMBDA.md §8.1). Keeps the current invocation's lines, bounded, for <c>X-Amz-Log-Result</c>, and
/// hands every line to the <see cref="LogStore"/> (the environment's log stream) without waiting for it.
/// </summary>
internal sealed class InvocationLog
{
    /// <summary>Lambda returns the last 4 KB of the invocation's log.</summary>
    public const int TailBytes = 4096;

    // Enough characters that the last 4 KB of UTF-8 is always inside.
    private const int KeepChars = 4 * TailBytes;

    /// <summary>
    /// Output one invocation may write before the rest is dropped (with a marker line): a flood of output costs the
    /// platform bounded work and memory, never a stall.
    /// </summary>
    public const long MaxBytesPerInvocation = 16 * 1024 * 1024;

    private readonly Lock _lock = new();
    private readonly StringBuilder _current = new();
    private long _bytes;
    private long _dropped;

    private readonly LogStore? _store;
    private readonly LogFormatting _formatting;

    public InvocationLog(string logGroupName, string logStreamName, LogStore? store = null, LogFormatting? formatting = null)
    {
        LogGroupName = logGroupName;
        LogStreamName = logStreamName;
        _store = store;
        _formatting = formatting ?? LogFormatting.Text;
    }

    public string LogGroupName { get; }

    public string LogStreamName { get; }

    /// <summary>
    /// Appends one line of function output. Returns false when the line was dropped: a flood, or (JSON log format) a
    /// level below the function's ApplicationLogLevel.
    /// </summary>
    public bool AppendOutput(string line)
    {
        if (!_formatting.KeepsApplicationLine(line))
        {
            return false;
        }
        lock (_lock)
        {
            _bytes += line.Length + 1;
            if (_bytes > MaxBytesPerInvocation)
            {
                _dropped += line.Length + 1;
                return false;
            }
        }
        Append(line);
        return true;
    }

    /// <summary>
    /// The first line of an environment's stream (not part of any invocation's tail): <c>INIT_START Runtime Version:
    /// python:3.12.…\tRuntime Version ARN: …</c>, or its <c>platform.initStart</c> record.
    /// </summary>
    public void InitStart(string runtime, string region, bool provisioned)
    {
        // python3.12 → python:3.12, nodejs20.x → nodejs:20, provided.al2023 → provided:al2023, dotnet8 → dotnet:8.
        var split = runtime.IndexOfAny(['0', '1', '2', '3', '4', '5', '6', '7', '8', '9', '.']);
        var family = split > 0 ? runtime[..split] : runtime;
        var version = split > 0 ? runtime[split..].TrimStart('.').Replace(".x", "", StringComparison.Ordinal) : "";
        var runtimeVersion = $"{family}:{version}.lamina1";
        var arn = $"arn:aws:lambda:{region}::runtime:lamina-{runtime}";
        if (_formatting.Json)
        {
            if (_formatting.KeepsSystem(LogFormatting.Info))
            {
                _store?.Write(LogGroupName, LogStreamName, LogFormatting.SystemRecord("platform.initStart", w =>
                {
                    w.WriteString("initializationType", provisioned ? "provisioned-concurrency" : "on-demand");
                    w.WriteString("phase", "init");
                    w.WriteString("runtimeVersion", runtimeVersion);
                    w.WriteString("runtimeVersionArn", arn);
                }));
            }
            return;
        }
        _store?.Write(LogGroupName, LogStreamName, $"INIT_START Runtime Version: {runtimeVersion}\tRuntime Version ARN: {arn}");
    }

    // The same rounding as the text REPORT line's "F2".
    private static double TwoDecimals(double value) => double.Parse(value.ToString("F2", CultureInfo.InvariantCulture), CultureInfo.InvariantCulture);

    private void AppendSystem(int level, string type, Action<System.Text.Json.Utf8JsonWriter> record)
    {
        if (_formatting.KeepsSystem(level))
        {
            Append(LogFormatting.SystemRecord(type, record));
        }
    }

    /// <summary>Appends one line (platform lines are never dropped).</summary>
    public void Append(string line)
    {
        _store?.Write(LogGroupName, LogStreamName, line);
        lock (_lock)
        {
            _current.Append(line).Append('\n');
            if (_current.Length > 2 * KeepChars)
            {
                _current.Remove(0, _current.Length - KeepChars);
            }
        }
    }

    /// <summary>
    /// Begins an invocation's log. Output before it belongs to it only on a cold start (the Init phase's lines:
    /// an import error, say); otherwise earlier lines are not part of this invocation's tail.
    /// </summary>
    public void Start(string requestId, string version, bool includeInitOutput)
    {
        lock (_lock)
        {
            _bytes = 0;
            _dropped = 0;
            if (!includeInitOutput)
            {
                _current.Clear();
            }
        }
        if (_formatting.Json)
        {
            StartRecord(requestId, version);
            return;
        }
        Append($"START RequestId: {requestId} Version: {version}");
    }

    // The JSON records apart, so that text-format invocations do not allocate their closures (issue #19).
    private void StartRecord(string requestId, string version) => AppendSystem(LogFormatting.Info, "platform.start", w =>
    {
        w.WriteString("requestId", requestId);
        w.WriteString("version", version);
    });

    public void End(string requestId)
    {
        long dropped;
        lock (_lock)
        {
            dropped = _dropped;
        }
        if (dropped > 0)
        {
            Append(string.Create(CultureInfo.InvariantCulture, $"[lamina] log output truncated: {dropped} bytes dropped after the first {MaxBytesPerInvocation} bytes of this invocation"));
        }
        if (!_formatting.Json)
        {
            Append($"END RequestId: {requestId}"); // JSON logs have no END record: platform.report closes the invocation
        }
    }

    /// <summary>Writes the REPORT line in Lambda's exact tab-separated layout (Init Duration last, trailing tab).</summary>
    public void Report(string requestId, double durationMs, int memorySizeMb, long maxMemoryUsedMb, double? initDurationMs, string? status)
    {
        if (_formatting.Json)
        {
            ReportRecord(requestId, durationMs, memorySizeMb, maxMemoryUsedMb, initDurationMs, status);
            return;
        }
        // One string, built on the stack (no StringBuilder per invocation).
        Span<char> buffer = stackalloc char[512];
        var line = new System.Runtime.CompilerServices.DefaultInterpolatedStringHandler(0, 0, CultureInfo.InvariantCulture, buffer);
        line.AppendLiteral("REPORT RequestId: ");
        line.AppendFormatted(requestId);
        line.AppendLiteral("\tDuration: ");
        line.AppendFormatted(durationMs, "F2");
        line.AppendLiteral(" ms\tBilled Duration: ");
        line.AppendFormatted((long)Math.Ceiling(durationMs));
        line.AppendLiteral(" ms\tMemory Size: ");
        line.AppendFormatted(memorySizeMb);
        line.AppendLiteral(" MB\tMax Memory Used: ");
        line.AppendFormatted(maxMemoryUsedMb);
        line.AppendLiteral(" MB\t");
        if (initDurationMs is { } init)
        {
            line.AppendLiteral("Init Duration: ");
            line.AppendFormatted(init, "F2");
            line.AppendLiteral(" ms\t");
        }
        if (status is not null)
        {
            line.AppendLiteral("Status: ");
            line.AppendFormatted(status);
            line.AppendLiteral("\t");
        }
        Append(line.ToStringAndClear());
    }

    private void ReportRecord(string requestId, double durationMs, int memorySizeMb, long maxMemoryUsedMb, double? initDurationMs, string? status) =>
        // A failed invocation's report is a warning: it stays even when SystemLogLevel is WARN.
        AppendSystem(status is null ? LogFormatting.Info : LogFormatting.Warn, "platform.report", w =>
        {
            w.WriteString("requestId", requestId);
            w.WriteStartObject("metrics");
            w.WriteNumber("durationMs", TwoDecimals(durationMs));
            w.WriteNumber("billedDurationMs", (long)Math.Ceiling(durationMs));
            w.WriteNumber("memorySizeMB", memorySizeMb);
            w.WriteNumber("maxMemoryUsedMB", maxMemoryUsedMb);
            if (initDurationMs is { } initMs)
            {
                w.WriteNumber("initDurationMs", TwoDecimals(initMs));
            }
            w.WriteEndObject();
            w.WriteString("status", status ?? "success");
        });

    /// <summary>Base64 of the last 4 KB (UTF-8) of the current invocation's log.</summary>
    public string Tail()
    {
        string text;
        lock (_lock)
        {
            text = _current.ToString();
        }
        var bytes = Encoding.UTF8.GetBytes(text);
        var start = Math.Max(0, bytes.Length - TailBytes);
        // Do not start in the middle of a UTF-8 sequence.
        while (start < bytes.Length && (bytes[start] & 0xC0) == 0x80)
        {
            start++;
        }
        return Convert.ToBase64String(bytes, start, bytes.Length - start);
    }

    /// <summary>
    /// Lambda's stream name: <c>YYYY/MM/DD/[version]id</c>; in a custom log group (LoggingConfig.LogGroup) the function's
    /// name comes before the version: <c>YYYY/MM/DD/name[version]id</c>.
    /// </summary>
    public static string StreamName(DateTimeOffset now, string version, string environmentId, string? functionInCustomGroup = null) =>
        string.Create(CultureInfo.InvariantCulture, $"{now:yyyy'/'MM'/'dd}/{functionInCustomGroup}[{version}]{environmentId}");

    /// <summary>The ISO-8601 timestamp Lambda uses in platform lines.</summary>
    public static string Timestamp(DateTimeOffset now) => now.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss.fff'Z'", CultureInfo.InvariantCulture);
}
