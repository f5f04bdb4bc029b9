using System.Text.Json;
using Lamina.Server.Lambda;

namespace Lamina.Server.Logs;

/// <summary>
/// A function's LoggingConfig as its log stream applies it: <c>LogFormat</c> Text (Lambda's classic lines) or JSON
/// (platform records as <c>{"time","type","record"}</c> objects, application lines filtered by level), with
/// <c>ApplicationLogLevel</c> (default INFO) and <c>SystemLogLevel</c> (default INFO) — levels apply to JSON only, as on
/// Lambda.
/// </summary>
internal sealed class LogFormatting
{
    // Most detailed first: a line is kept when its level is at least the configured one.
    public const int Trace = 0, Debug = 1, Info = 2, Warn = 3, Error = 4, Fatal = 5;

    public static readonly LogFormatting Text = new(json: false, Info, Info);

    private readonly int _applicationLevel;
    private readonly int _systemLevel;

    private LogFormatting(bool json, int applicationLevel, int systemLevel)
    {
        Json = json;
        _applicationLevel = applicationLevel;
        _systemLevel = systemLevel;
    }

    public bool Json { get; }

    public static LogFormatting For(FunctionConfig config) => config.LogFormat != "JSON"
        ? Text
        : new LogFormatting(json: true, ParseLevel(config.ApplicationLogLevel) ?? Info, ParseLevel(config.SystemLogLevel) ?? Info);

    /// <summary>A platform record at <paramref name="level"/> goes to the stream (JSON format, SystemLogLevel).</summary>
    public bool KeepsSystem(int level) => !Json || level >= _systemLevel;

    /// <summary>
    /// Whether a line of function output goes to the stream. In JSON format a line that is a JSON object with a
    /// <c>level</c> is judged by it; any other line counts as INFO (Lambda's rule).
    /// </summary>
    public bool KeepsApplicationLine(string line)
    {
        if (!Json || _applicationLevel <= Info && !line.StartsWith('{'))
        {
            return true;
        }
        return LevelOf(line) >= _applicationLevel;
    }

    private static int LevelOf(string line)
    {
        if (!line.StartsWith('{'))
        {
            return Info;
        }
        try
        {
            using var document = JsonDocument.Parse(line);
            return document.RootElement.ValueKind == JsonValueKind.Object
                && document.RootElement.TryGetProperty("level", out var level) && level.ValueKind == JsonValueKind.String
                && ParseLevel(level.GetString()) is { } parsed ? parsed : Info;
        }
        catch (JsonException)
        {
            return Info;
        }
    }

    private static int? ParseLevel(string? level) => level?.ToUpperInvariant() switch
    {
        "TRACE" => Trace,
        "DEBUG" => Debug,
        "INFO" => Info,
        "WARN" or "WARNING" => Warn,
        "ERROR" => Error,
        "FATAL" or "CRITICAL" => Fatal,
        _ => null,
    };

    /// <summary>One platform record as Lambda writes it in JSON format: <c>{"time":…,"type":…,"record":{…}}</c>.</summary>
    public static string SystemRecord(string type, Action<Utf8JsonWriter> record)
    {
        using var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartObject();
            w.WriteString("time", InvocationLog.Timestamp(TimeProvider.System.GetUtcNow()));
            w.WriteString("type", type);
            w.WriteStartObject("record");
            record(w);
            w.WriteEndObject();
            w.WriteEndObject();
        }
        return System.Text.Encoding.UTF8.GetString(buffer.GetBuffer(), 0, (int)buffer.Length);
    }
}
