using System.IO.Compression;
using System.Text.Json;
using Lamina.Server.Logs;

namespace Lamina.Tests.Logs;

/// <summary>What a subscribed function receives: CloudWatch Logs' awslogs envelope around gzip'd, base64 JSON.</summary>
public sealed class LogSubscriptionsTests
{
    [Fact]
    public void Payload_AnotherAccountsGroup_DecodesToTheDataMessageWithTheExternalGroupName()
    {
        Assert.True(FilterPattern.TryParse("ERROR", out var pattern, out _));
        var filter = new SubscriptionFilter("111111111111:/app/orders", "errors", "ERROR", pattern, "arn:aws:lambda:us-east-1:111111111111:function:sink", null, "ByLogStream", 0);
        MatchedEvent[] events = [new(filter, "worker-1", 7, 1_700_000_000_000, "ERROR one"), new(filter, "worker-1", 9, 1_700_000_000_001, "ERROR \"two\"\nlines")];

        var payload = LogSubscriptions.Payload("111111111111", filter, "worker-1", events);

        using var envelope = JsonDocument.Parse(payload);
        var data = Convert.FromBase64String(envelope.RootElement.GetProperty("awslogs").GetProperty("data").GetString()!);
        using var gzip = new GZipStream(new MemoryStream(data), CompressionMode.Decompress);
        using var message = JsonDocument.Parse(gzip);
        var root = message.RootElement;
        Assert.Equal("DATA_MESSAGE", root.GetProperty("messageType").GetString());
        Assert.Equal("111111111111", root.GetProperty("owner").GetString());
        Assert.Equal("/app/orders", root.GetProperty("logGroup").GetString());
        Assert.Equal("worker-1", root.GetProperty("logStream").GetString());
        Assert.Equal(["errors"], root.GetProperty("subscriptionFilters").EnumerateArray().Select(static f => f.GetString()!));
        var logEvents = root.GetProperty("logEvents").EnumerateArray().ToList();
        Assert.Equal(["00000000000000000007", "00000000000000000009"], logEvents.Select(static e => e.GetProperty("id").GetString()!));
        Assert.Equal([1_700_000_000_000, 1_700_000_000_001], logEvents.Select(static e => e.GetProperty("timestamp").GetInt64()));
        Assert.Equal(["ERROR one", "ERROR \"two\"\nlines"], logEvents.Select(static e => e.GetProperty("message").GetString()!));
    }
}
