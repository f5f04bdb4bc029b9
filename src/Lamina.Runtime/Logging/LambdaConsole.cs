using System.Buffers;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Lamina.Runtime.Hosting;

namespace Lamina.Runtime.Logging;

/// <summary>
/// The function's log output, formatted as AWS's .NET runtime does it: <c>Console.Out</c> and <c>Console.Error</c>
/// are replaced so every <c>WriteLine</c> becomes one record (stdout at Information, stderr at Error), and
/// <see cref="ILambdaLogger"/> writes records at any level.
/// <list type="bullet">
/// <item>Text (default): <c>2024-05-01T12:00:00.000Z\t&lt;request id&gt;\tinfo\t&lt;message&gt;</c>; the request id is
/// empty outside an invocation (Init), as on AWS.</item>
/// <item>JSON (<c>AWS_LAMBDA_LOG_FORMAT=JSON</c>): <c>{"timestamp","level","requestId","traceId","message"}</c>
/// plus <c>errorType</c>/<c>errorMessage</c>/<c>stackTrace</c> for exceptions.</item>
/// </list>
/// A record is one line: line breaks inside a Text message are written as <c>\r</c> (as Lamina's Node.js and Python
/// runtimes do), so a line-based log collector keeps a multi-line message (a stack trace) in one event.
/// <c>Write</c> without a line break passes through unformatted, as on AWS.
/// Records below <c>AWS_LAMBDA_LOG_LEVEL</c> (TRACE, DEBUG, INFO, WARN, ERROR, FATAL; default INFO) are dropped.
/// </summary>
internal static class LambdaConsole
{
    private static readonly object Gate = new();
    private static Stream? s_stdout;
    private static Stream? s_stderr;
    private static bool s_installed;

    public static string RequestId { get; set; } = "";

    public static string TraceId { get; set; } = "";

    public static bool Json { get; private set; }

    public static LogLevel MinimumLevel { get; private set; } = LogLevel.Information;

    public static ILambdaLogger Logger { get; } = new ConsoleLogger();

    /// <summary>Replaces <c>Console.Out</c> and <c>Console.Error</c>; idempotent.</summary>
    public static void Install()
    {
        lock (Gate)
        {
            if (s_installed)
            {
                return;
            }
            s_installed = true;
            Json = string.Equals(Environment.GetEnvironmentVariable("AWS_LAMBDA_LOG_FORMAT"), "JSON", StringComparison.OrdinalIgnoreCase);
            MinimumLevel = ParseLevel(Environment.GetEnvironmentVariable("AWS_LAMBDA_LOG_LEVEL"))
                ?? ParseLevel(Environment.GetEnvironmentVariable("AWS_LAMBDA_HANDLER_LOG_LEVEL"))
                ?? LogLevel.Information;
            s_stdout = Console.OpenStandardOutput();
            s_stderr = Console.OpenStandardError();
            Console.SetOut(new RecordWriter(s_stdout, LogLevel.Information));
            Console.SetError(new RecordWriter(s_stderr, LogLevel.Error));
        }
    }

    /// <summary>Writes one record, if <paramref name="level"/> is enabled.</summary>
    public static void WriteRecord(LogLevel level, string? message, Exception? exception = null, bool toStderr = false)
    {
        if (level < MinimumLevel)
        {
            return;
        }
        var stream = (toStderr ? s_stderr : s_stdout) ?? (toStderr ? Console.OpenStandardError() : Console.OpenStandardOutput());
        var record = Json ? FormatJson(level, message, exception) : FormatText(level, message, exception);
        lock (Gate)
        {
            stream.Write(record);
            stream.Flush();
        }
    }

    /// <summary>Writes <paramref name="text"/> as it is.</summary>
    public static void WriteRaw(string text, bool toStderr = false)
    {
        var stream = (toStderr ? s_stderr : s_stdout) ?? (toStderr ? Console.OpenStandardError() : Console.OpenStandardOutput());
        var bytes = Encoding.UTF8.GetBytes(text);
        lock (Gate)
        {
            stream.Write(bytes);
            stream.Flush();
        }
    }

    internal static string Timestamp() =>
        TimeProvider.System.GetUtcNow().ToString("yyyy-MM-dd'T'HH:mm:ss.fff'Z'", CultureInfo.InvariantCulture);

    internal static byte[] FormatText(LogLevel level, string? message, Exception? exception)
    {
        var builder = new StringBuilder(64 + (message?.Length ?? 0));
        builder.Append(Timestamp()).Append('\t').Append(RequestId).Append('\t').Append(TextLabel(level)).Append('\t');
        AppendOneLine(builder, message);
        if (exception is not null)
        {
            if (!string.IsNullOrEmpty(message))
            {
                builder.Append('\r');
            }
            AppendOneLine(builder, exception.ToString());
        }
        builder.Append('\n');
        return Encoding.UTF8.GetBytes(builder.ToString());
    }

    internal static byte[] FormatJson(LogLevel level, string? message, Exception? exception)
    {
        var buffer = new ArrayBufferWriter<byte>(256);
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            json.WriteString("timestamp", Timestamp());
            json.WriteString("level", level.ToString());
            json.WriteString("requestId", RequestId);
            if (TraceId.Length > 0)
            {
                json.WriteString("traceId", TraceId);
            }
            json.WriteString("message", message ?? "");
            if (exception is not null)
            {
                json.WriteString("errorType", exception.GetType().Name);
                json.WriteString("errorMessage", exception.Message);
                json.WriteStartArray("stackTrace");
                foreach (var line in ErrorReport.StackTraceLines(exception.StackTrace))
                {
                    json.WriteStringValue(line);
                }
                json.WriteEndArray();
            }
            json.WriteEndObject();
        }
        buffer.Write("\n"u8);
        return buffer.WrittenSpan.ToArray();
    }

    /// <summary>AWS's labels, those of Microsoft.Extensions.Logging's console provider.</summary>
    internal static string TextLabel(LogLevel level) => level switch
    {
        LogLevel.Trace => "trce",
        LogLevel.Debug => "dbug",
        LogLevel.Information => "info",
        LogLevel.Warning => "warn",
        LogLevel.Error => "fail",
        LogLevel.Critical => "crit",
        _ => level.ToString(),
    };

    internal static LogLevel? ParseLevel(string? value) => value?.Trim().ToUpperInvariant() switch
    {
        "TRACE" => LogLevel.Trace,
        "DEBUG" => LogLevel.Debug,
        "INFO" or "INFORMATION" => LogLevel.Information,
        "WARN" or "WARNING" => LogLevel.Warning,
        "ERROR" => LogLevel.Error,
        "FATAL" or "CRITICAL" => LogLevel.Critical,
        _ => null,
    };

    private static void AppendOneLine(StringBuilder builder, string? text)
    {
        if (string.IsNullOrEmpty(text))
        {
            return;
        }
        var start = builder.Length;
        builder.Append(text);
        if (text.Contains('\n'))
        {
            builder.Replace("\r\n", "\r", start, builder.Length - start).Replace('\n', '\r', start, builder.Length - start);
        }
    }

    private sealed class ConsoleLogger : ILambdaLogger
    {
        public void Log(string message) => WriteRaw(message);

        public void LogLine(string message) => WriteRecord(LogLevel.Information, message);

        public void Log(LogLevel level, string message) => WriteRecord(level, message);

        public void Log(LogLevel level, Exception exception, string message) => WriteRecord(level, message, exception);
    }

    /// <summary>
    /// <c>WriteLine</c> in every form becomes one record; <c>Write</c> passes through. All overloads are listed
    /// because <see cref="TextWriter"/>'s defaults split a <c>WriteLine(x)</c> into <c>Write(x)</c> + newline.
    /// </summary>
    private sealed class RecordWriter : TextWriter
    {
        private readonly Stream _stream;
        private readonly LogLevel _level;
        private readonly bool _stderr;

        public RecordWriter(Stream stream, LogLevel level)
            : base(CultureInfo.InvariantCulture)
        {
            _stream = stream;
            _level = level;
            _stderr = level >= LogLevel.Error;
        }

        public override Encoding Encoding => Encoding.UTF8;

        public override IFormatProvider FormatProvider => CultureInfo.CurrentCulture;

        private void Record(string? message) => WriteRecord(_level, message, toStderr: _stderr);

        public override void Write(char value) => Write(value.ToString());

        public override void Write(string? value)
        {
            if (!string.IsNullOrEmpty(value))
            {
                var bytes = Encoding.UTF8.GetBytes(value);
                lock (Gate)
                {
                    _stream.Write(bytes);
                    _stream.Flush();
                }
            }
        }

        public override void Write(char[] buffer, int index, int count) => Write(new string(buffer, index, count));

        public override void Write(ReadOnlySpan<char> buffer) => Write(buffer.ToString());

        public override void WriteLine() => Record("");

        public override void WriteLine(string? value) => Record(value);

        public override void WriteLine(object? value) => Record(value is IFormattable f ? f.ToString(null, FormatProvider) : value?.ToString());

        public override void WriteLine(bool value) => Record(value.ToString());

        public override void WriteLine(char value) => Record(value.ToString());

        public override void WriteLine(char[]? buffer) => Record(buffer is null ? "" : new string(buffer));

        public override void WriteLine(char[] buffer, int index, int count) => Record(new string(buffer, index, count));

        public override void WriteLine(ReadOnlySpan<char> buffer) => Record(buffer.ToString());

        public override void WriteLine(StringBuilder? value) => Record(value?.ToString());

        public override void WriteLine(int value) => Record(value.ToString(FormatProvider));

        public override void WriteLine(uint value) => Record(value.ToString(FormatProvider));

        public override void WriteLine(long value) => Record(value.ToString(FormatProvider));

        public override void WriteLine(ulong value) => Record(value.ToString(FormatProvider));

        public override void WriteLine(float value) => Record(value.ToString(FormatProvider));

        public override void WriteLine(double value) => Record(value.ToString(FormatProvider));

        public override void WriteLine(decimal value) => Record(value.ToString(FormatProvider));

        public override void WriteLine(string format, object? arg0) => Record(string.Format(FormatProvider, format, arg0));

        public override void WriteLine(string format, object? arg0, object? arg1) => Record(string.Format(FormatProvider, format, arg0, arg1));

        public override void WriteLine(string format, object? arg0, object? arg1, object? arg2) => Record(string.Format(FormatProvider, format, arg0, arg1, arg2));

        public override void WriteLine(string format, params object?[] arg) => Record(string.Format(FormatProvider, format, arg));

        public override Task WriteLineAsync(string? value)
        {
            Record(value);
            return Task.CompletedTask;
        }

        public override Task WriteLineAsync()
        {
            Record("");
            return Task.CompletedTask;
        }

        public override Task WriteAsync(string? value)
        {
            Write(value);
            return Task.CompletedTask;
        }
    }
}
