namespace Lamina.Runtime;

/// <summary>
/// Writes to the function's log stream. In the Text log format each line is
/// <c>&lt;ISO-8601 time&gt;\t&lt;request id&gt;\t&lt;level&gt;\t&lt;message&gt;</c>, as AWS's .NET runtime writes it;
/// with <c>AWS_LAMBDA_LOG_FORMAT=JSON</c> each is one JSON object. <c>Console.WriteLine</c> goes through the same
/// formatting (stdout as <see cref="LogLevel.Information"/>, stderr as <see cref="LogLevel.Error"/>).
/// </summary>
public interface ILambdaLogger
{
    /// <summary>Writes <paramref name="message"/> as it is, without a prefix or a line break.</summary>
    void Log(string message);

    /// <summary>Writes one log record at <see cref="LogLevel.Information"/>.</summary>
    void LogLine(string message);

    /// <summary>Writes one log record at <paramref name="level"/>, if the level is enabled (<c>AWS_LAMBDA_LOG_LEVEL</c>).</summary>
    void Log(LogLevel level, string message);

    /// <summary>Writes one log record at <paramref name="level"/> with the exception's type, message and stack trace.</summary>
    void Log(LogLevel level, Exception exception, string message);

    /// <summary>Writes one log record at <see cref="LogLevel.Trace"/>.</summary>
    void LogTrace(string message) => Log(LogLevel.Trace, message);

    /// <summary>Writes one log record at <see cref="LogLevel.Debug"/>.</summary>
    void LogDebug(string message) => Log(LogLevel.Debug, message);

    /// <summary>Writes one log record at <see cref="LogLevel.Information"/>.</summary>
    void LogInformation(string message) => Log(LogLevel.Information, message);

    /// <summary>Writes one log record at <see cref="LogLevel.Warning"/>.</summary>
    void LogWarning(string message) => Log(LogLevel.Warning, message);

    /// <summary>Writes one log record at <see cref="LogLevel.Error"/>.</summary>
    void LogError(string message) => Log(LogLevel.Error, message);

    /// <summary>Writes one log record at <see cref="LogLevel.Critical"/>.</summary>
    void LogCritical(string message) => Log(LogLevel.Critical, message);
}

/// <summary>Log levels, as in <c>Amazon.Lambda.Core.LogLevel</c>.</summary>
public enum LogLevel
{
    /// <summary>Written as <c>trce</c> (Text) or <c>TRACE</c> (JSON).</summary>
    Trace = 0,

    /// <summary>Written as <c>dbug</c> (Text) or <c>DEBUG</c> (JSON).</summary>
    Debug = 1,

    /// <summary>Written as <c>info</c> (Text) or <c>INFO</c> (JSON); the default minimum level.</summary>
    Information = 2,

    /// <summary>Written as <c>warn</c> (Text) or <c>WARN</c> (JSON).</summary>
    Warning = 3,

    /// <summary>Written as <c>fail</c> (Text) or <c>ERROR</c> (JSON).</summary>
    Error = 4,

    /// <summary>Written as <c>crit</c> (Text) or <c>FATAL</c> (JSON).</summary>
    Critical = 5,
}
