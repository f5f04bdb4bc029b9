using System.Buffers;
using System.Text.Json;

namespace Lamina.Runtime.Hosting;

/// <summary>
/// An exception as AWS's .NET runtime reports it to the Runtime API: <c>errorType</c> (the exception type's name),
/// <c>errorMessage</c>, <c>stackTrace</c> (one trimmed line each), <c>cause</c> (the inner exception) and
/// <c>causes</c> (an <see cref="AggregateException"/>'s), capped at 256 KB like AWS.
/// </summary>
internal static class ErrorReport
{
    private const int MaxBytes = 256 * 1024;
    private const int MaxDepth = 16;

    public static string ErrorType(Exception exception) => exception.GetType().Name;

    public static byte[] ToJson(Exception exception)
    {
        var buffer = new ArrayBufferWriter<byte>(1024);
        using (var json = new Utf8JsonWriter(buffer))
        {
            Write(json, exception, 0);
        }
        if (buffer.WrittenCount <= MaxBytes)
        {
            return buffer.WrittenSpan.ToArray();
        }
        var small = new ArrayBufferWriter<byte>(256);
        using (var json = new Utf8JsonWriter(small))
        {
            json.WriteStartObject();
            json.WriteString("errorType", ErrorType(exception));
            json.WriteString("errorMessage", "Exception exceeded maximum payload size of 256KB.");
            json.WriteEndObject();
        }
        return small.WrittenSpan.ToArray();
    }

    /// <summary>A body for an error the runtime itself detected (no exception object of the user's).</summary>
    public static byte[] ToJson(string errorType, string errorMessage)
    {
        var buffer = new ArrayBufferWriter<byte>(256);
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            json.WriteString("errorType", errorType);
            json.WriteString("errorMessage", errorMessage);
            json.WriteEndObject();
        }
        return buffer.WrittenSpan.ToArray();
    }

    public static IEnumerable<string> StackTraceLines(string? stackTrace)
    {
        if (string.IsNullOrEmpty(stackTrace))
        {
            yield break;
        }
        foreach (var line in stackTrace.Split('\n'))
        {
            var trimmed = line.Trim();
            if (trimmed.Length > 0)
            {
                yield return trimmed;
            }
        }
    }

    private static void Write(Utf8JsonWriter json, Exception exception, int depth)
    {
        json.WriteStartObject();
        json.WriteString("errorType", ErrorType(exception));
        json.WriteString("errorMessage", exception.Message);
        var lines = StackTraceLines(exception.StackTrace).ToList();
        if (lines.Count > 0)
        {
            json.WriteStartArray("stackTrace");
            foreach (var line in lines)
            {
                json.WriteStringValue(line);
            }
            json.WriteEndArray();
        }
        if (depth < MaxDepth)
        {
            if (exception.InnerException is { } inner)
            {
                json.WritePropertyName("cause");
                Write(json, inner, depth + 1);
            }
            if (exception is AggregateException aggregate && aggregate.InnerExceptions.Count > 0)
            {
                json.WriteStartArray("causes");
                foreach (var each in aggregate.InnerExceptions)
                {
                    Write(json, each, depth + 1);
                }
                json.WriteEndArray();
            }
        }
        json.WriteEndObject();
    }
}
