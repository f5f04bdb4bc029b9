using System.Text;
using System.Text.RegularExpressions;
using Lamina.Server.Lambda;
using Lamina.Server.Logs;

namespace Lamina.Tests;

public sealed class InvocationLogTests
{
    private static InvocationLog CreateSut() => new("/aws/lambda/f", "2026/11/23/[$LATEST]0123456789abcdef0123456789abcdef");

    private static string DecodeTail(InvocationLog log) => Encoding.UTF8.GetString(Convert.FromBase64String(log.Tail()));

    [Fact]
    public void Report_ColdStart_HasLambdasTabSeparatedLayoutWithInitDurationLast()
    {
        var log = CreateSut();
        log.Start("id-1", "$LATEST", includeInitOutput: false);
        log.End("id-1");
        log.Report("id-1", 12.345, 128, 42, 160.5, status: null);

        var lines = DecodeTail(log).Split('\n');
        Assert.Equal("START RequestId: id-1 Version: $LATEST", lines[0]);
        Assert.Equal("END RequestId: id-1", lines[1]);
        Assert.Equal("REPORT RequestId: id-1\tDuration: 12.35 ms\tBilled Duration: 13 ms\tMemory Size: 128 MB\tMax Memory Used: 42 MB\tInit Duration: 160.50 ms\t", lines[2]);
    }

    [Fact]
    public void Report_Timeout_AppendsStatusAfterMemory()
    {
        var log = CreateSut();
        log.Start("id", "$LATEST", includeInitOutput: false);
        log.Report("id", 1000.0, 256, 30, initDurationMs: null, status: "timeout");

        Assert.Contains("Max Memory Used: 30 MB\tStatus: timeout\t", DecodeTail(log), StringComparison.Ordinal);
    }

    [Fact]
    public void Start_WarmInvocation_DropsEarlierLines()
    {
        var log = CreateSut();
        log.Append("from the previous invocation");
        log.Start("id", "$LATEST", includeInitOutput: false);

        Assert.DoesNotContain("previous", DecodeTail(log), StringComparison.Ordinal);
    }

    [Fact]
    public void Start_ColdInvocation_KeepsInitOutput()
    {
        var log = CreateSut();
        log.Append("init: importing");
        log.Start("id", "$LATEST", includeInitOutput: true);

        Assert.StartsWith("init: importing\nSTART", DecodeTail(log), StringComparison.Ordinal);
    }

    [Fact]
    public void Tail_LongOutput_IsTheLast4KBWithoutABrokenCharacter()
    {
        var log = CreateSut();
        log.Start("id", "$LATEST", includeInitOutput: false);
        for (var i = 0; i < 2000; i++)
        {
            log.Append($"line {i} é");
        }
        log.End("id");

        var bytes = Convert.FromBase64String(log.Tail());
        Assert.True(bytes.Length <= InvocationLog.TailBytes);
        Assert.True(bytes.Length > InvocationLog.TailBytes - 4);
        Assert.EndsWith("END RequestId: id\n", Encoding.UTF8.GetString(bytes), StringComparison.Ordinal);
        Assert.NotEqual(0x80, bytes[0] & 0xC0);
    }

    [Fact]
    public void StreamName_FollowsLambdasLayout()
    {
        var name = InvocationLog.StreamName(new DateTimeOffset(2026, 1, 2, 3, 4, 5, TimeSpan.Zero), "$LATEST", "0123456789abcdef0123456789abcdef");
        Assert.Matches(new Regex(@"^2026/01/02/\[\$LATEST\][0-9a-f]{32}$"), name);
    }
}

public sealed class InvocationLogFloodTests
{
    [Fact]
    public void AppendOutput_PastTheCap_DropsTheRestAndEndsWithAMarker()
    {
        var log = new InvocationLog("/aws/lambda/f", "s");
        log.Start("id", "$LATEST", includeInitOutput: false);
        var line = new string('x', 1024 * 1024 - 1);
        var accepted = 0;
        for (var i = 0; i < 20; i++)
        {
            accepted += log.AppendOutput(line) ? 1 : 0;
        }
        log.End("id");

        Assert.Equal(16, accepted);
        var tail = System.Text.Encoding.UTF8.GetString(Convert.FromBase64String(log.Tail()));
        Assert.Contains("[lamina] log output truncated: 4194304 bytes dropped", tail, StringComparison.Ordinal);
        Assert.EndsWith("END RequestId: id\n", tail, StringComparison.Ordinal);
    }

    [Fact]
    public void Start_ResetsTheCap()
    {
        var log = new InvocationLog("/aws/lambda/f", "s");
        log.Start("a", "$LATEST", includeInitOutput: false);
        var line = new string('x', 1024 * 1024 - 1);
        for (var i = 0; i < 17; i++)
        {
            log.AppendOutput(line);
        }
        log.Start("b", "$LATEST", includeInitOutput: false);
        Assert.True(log.AppendOutput("fresh"));
    }

    private static string DecodeTail(InvocationLog log) => Encoding.UTF8.GetString(Convert.FromBase64String(log.Tail()));

    private static InvocationLog CreateJson(string? applicationLevel = null, string? systemLevel = null) =>
        new("/aws/lambda/f", "s", store: null, LogFormatting.For(new FunctionConfig
        {
            Name = "f",
            Runtime = "python3.12",
            Role = "arn:aws:iam::000000000000:role/r",
            Handler = "app.handler",
            CodeSha256 = Convert.ToBase64String(new byte[32]),
            CodeSize = 1,
            LastModified = default,
            RevisionId = "r",
            LogFormat = "JSON",
            ApplicationLogLevel = applicationLevel,
            SystemLogLevel = systemLevel,
        }));

    [Fact]
    public void JsonFormat_PlatformRecordsAreJsonObjects_WithoutAnEndRecord()
    {
        var log = CreateJson();
        log.Start("id-1", "$LATEST", includeInitOutput: false);
        log.AppendOutput("plain output");
        log.End("id-1");
        log.Report("id-1", 12.345, 128, 42, 160.5, status: null);

        var lines = DecodeTail(log).TrimEnd('\n').Split('\n');
        Assert.Equal(3, lines.Length);
        using var start = System.Text.Json.JsonDocument.Parse(lines[0]);
        Assert.Equal("platform.start", start.RootElement.GetProperty("type").GetString());
        Assert.Equal("id-1", start.RootElement.GetProperty("record").GetProperty("requestId").GetString());
        Assert.Matches(@"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", start.RootElement.GetProperty("time").GetString()!);
        Assert.Equal("plain output", lines[1]);
        using var report = System.Text.Json.JsonDocument.Parse(lines[2]);
        var metrics = report.RootElement.GetProperty("record").GetProperty("metrics");
        Assert.Equal("platform.report", report.RootElement.GetProperty("type").GetString());
        Assert.Equal((12.35, 13L, 128, 42, 160.5), (metrics.GetProperty("durationMs").GetDouble(), metrics.GetProperty("billedDurationMs").GetInt64(),
            metrics.GetProperty("memorySizeMB").GetInt32(), metrics.GetProperty("maxMemoryUsedMB").GetInt32(), metrics.GetProperty("initDurationMs").GetDouble()));
        Assert.Equal("success", report.RootElement.GetProperty("record").GetProperty("status").GetString());
    }

    [Fact]
    public void JsonFormat_ApplicationLevel_FiltersByTheLinesLevel_PlainLinesCountAsInfo()
    {
        var log = CreateJson(applicationLevel: "WARN");
        log.Start("id", "$LATEST", includeInitOutput: false);

        Assert.False(log.AppendOutput("""{"level":"INFO","message":"dropped"}"""));
        Assert.False(log.AppendOutput("plain, so INFO: dropped"));
        Assert.True(log.AppendOutput("""{"level":"ERROR","message":"kept"}"""));
        Assert.True(log.AppendOutput("""{"level":"warn","message":"kept too"}"""));

        var tail = DecodeTail(log);
        Assert.DoesNotContain("dropped", tail, StringComparison.Ordinal);
        Assert.Contains("kept too", tail, StringComparison.Ordinal);
    }

    [Fact]
    public void JsonFormat_SystemLevelWarn_KeepsOnlyFailedReports()
    {
        var log = CreateJson(systemLevel: "WARN");
        log.Start("ok", "$LATEST", includeInitOutput: false);
        log.Report("ok", 1, 128, 10, null, status: null);
        log.Start("bad", "$LATEST", includeInitOutput: false);
        log.Report("bad", 1, 128, 10, null, status: "timeout");

        var tail = DecodeTail(log);
        Assert.DoesNotContain("platform.start", tail, StringComparison.Ordinal);
        Assert.Contains("\"status\":\"timeout\"", tail, StringComparison.Ordinal);
    }

    [Fact]
    public void TextFormat_IgnoresLevels()
    {
        var log = new InvocationLog("/aws/lambda/f", "s");
        Assert.True(log.AppendOutput("""{"level":"DEBUG","message":"kept"}"""));
    }
}
