using System.Text;
using System.Text.Json;
using Lamina.Runtime;
using Lamina.Runtime.Logging;

namespace Lamina.Tests.DotNetRuntime;

public class LambdaConsoleTests
{
    [Fact]
    public void FormatText_Record_IsTimestampRequestIdLevelMessageOnOneLine()
    {
        LambdaConsole.RequestId = "req-1";

        var line = Encoding.UTF8.GetString(LambdaConsole.FormatText(LogLevel.Warning, "two\nlines\r\nhere", null));

        Assert.Matches(@"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z\treq-1\twarn\ttwo\rlines\rhere\n$", line);
    }

    [Fact]
    public void FormatText_WithException_AppendsItOnTheSameLine()
    {
        LambdaConsole.RequestId = "";

        var line = Encoding.UTF8.GetString(LambdaConsole.FormatText(LogLevel.Error, "failed", new InvalidOperationException("boom")));

        Assert.Matches(@"^\S+\t\tfail\tfailed\rSystem\.InvalidOperationException: boom\n$", line);
    }

    [Fact]
    public void FormatJson_Record_HasAwsFields()
    {
        LambdaConsole.RequestId = "req-2";
        LambdaConsole.TraceId = "Root=1-abc";

        var json = LambdaConsole.FormatJson(LogLevel.Information, "hello", new FormatException("bad"));

        Assert.Equal((byte)'\n', json[^1]);
        using var document = JsonDocument.Parse(json);
        var root = document.RootElement;
        Assert.Equal("Information", root.GetProperty("level").GetString());
        Assert.Equal("req-2", root.GetProperty("requestId").GetString());
        Assert.Equal("Root=1-abc", root.GetProperty("traceId").GetString());
        Assert.Equal("hello", root.GetProperty("message").GetString());
        Assert.Equal("FormatException", root.GetProperty("errorType").GetString());
        Assert.Equal("bad", root.GetProperty("errorMessage").GetString());
    }

    [Theory]
    [InlineData(LogLevel.Trace, "trce")]
    [InlineData(LogLevel.Debug, "dbug")]
    [InlineData(LogLevel.Information, "info")]
    [InlineData(LogLevel.Warning, "warn")]
    [InlineData(LogLevel.Error, "fail")]
    [InlineData(LogLevel.Critical, "crit")]
    public void TextLabel_Level_IsAwsLabel(LogLevel level, string label) => Assert.Equal(label, LambdaConsole.TextLabel(level));

    [Theory]
    [InlineData("TRACE", LogLevel.Trace)]
    [InlineData("debug", LogLevel.Debug)]
    [InlineData("INFO", LogLevel.Information)]
    [InlineData("WARN", LogLevel.Warning)]
    [InlineData("ERROR", LogLevel.Error)]
    [InlineData("FATAL", LogLevel.Critical)]
    [InlineData("nonsense", null)]
    [InlineData(null, null)]
    public void ParseLevel_LambdaLogLevel_MapsToLogLevel(string? value, LogLevel? expected) => Assert.Equal(expected, LambdaConsole.ParseLevel(value));
}
