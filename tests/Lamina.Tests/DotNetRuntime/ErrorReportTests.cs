using System.Text.Json;
using Lamina.Runtime.Hosting;

namespace Lamina.Tests.DotNetRuntime;

public class ErrorReportTests
{
    [Fact]
    public void ToJson_ThrownException_HasAwsShapeWithCause()
    {
        var error = Thrown(() => throw new InvalidOperationException("outer", new ArgumentException("inner")));

        using var json = JsonDocument.Parse(ErrorReport.ToJson(error));
        var root = json.RootElement;

        Assert.Equal("InvalidOperationException", root.GetProperty("errorType").GetString());
        Assert.Equal("outer", root.GetProperty("errorMessage").GetString());
        var lines = root.GetProperty("stackTrace").EnumerateArray().Select(l => l.GetString()!).ToList();
        Assert.NotEmpty(lines);
        Assert.All(lines, line => Assert.Equal(line.Trim(), line));
        Assert.StartsWith("at ", lines[0], StringComparison.Ordinal);
        Assert.Equal("ArgumentException", root.GetProperty("cause").GetProperty("errorType").GetString());
        Assert.Equal("inner", root.GetProperty("cause").GetProperty("errorMessage").GetString());
    }

    [Fact]
    public void ToJson_AggregateException_ListsCauses()
    {
        var error = new AggregateException(new TimeoutException("a"), new FormatException("b"));

        using var json = JsonDocument.Parse(ErrorReport.ToJson(error));

        var causes = json.RootElement.GetProperty("causes").EnumerateArray().Select(c => c.GetProperty("errorType").GetString()).ToList();
        Assert.Equal(["TimeoutException", "FormatException"], causes);
        Assert.False(json.RootElement.TryGetProperty("stackTrace", out _), "a never-thrown exception has no stack trace");
    }

    [Fact]
    public void ToJson_HugeMessage_IsCappedAt256KB()
    {
        var body = ErrorReport.ToJson(new InvalidOperationException(new string('x', 300 * 1024)));

        using var json = JsonDocument.Parse(body);
        Assert.True(body.Length < 1024);
        Assert.Equal("InvalidOperationException", json.RootElement.GetProperty("errorType").GetString());
        Assert.Equal("Exception exceeded maximum payload size of 256KB.", json.RootElement.GetProperty("errorMessage").GetString());
    }

    private static Exception Thrown(Action action)
    {
        try
        {
            action();
        }
        catch (Exception e)
        {
            return e;
        }
        throw new InvalidOperationException("did not throw");
    }
}
