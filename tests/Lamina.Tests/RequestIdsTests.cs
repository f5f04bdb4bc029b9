using System.Text.RegularExpressions;
using Lamina.Server.Hosting;
using Lamina.Server.Invoke;

namespace Lamina.Tests;

/// <summary>Request and trace ids come from a per-thread buffer of random bytes (issue #19); their forms stay Lambda's.</summary>
public sealed partial class RequestIdsTests
{
    [GeneratedRegex("^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")]
    private static partial Regex UuidV4();

    [GeneratedRegex("^Root=1-[0-9a-f]{8}-[0-9a-f]{24};Parent=[0-9a-f]{16};Sampled=0$")]
    private static partial Regex XRayHeader();

    [Fact]
    public void NewId_ManyCalls_AreDistinctVersion4Uuids()
    {
        var ids = Enumerable.Range(0, 1000).Select(_ => RequestIds.NewId()).ToList();

        Assert.All(ids, id => Assert.Matches(UuidV4(), id));
        Assert.Equal(ids.Count, ids.Distinct(StringComparer.Ordinal).Count());
    }

    [Fact]
    public void NewTraceId_HasTheXRayFormAndTheCurrentEpoch()
    {
        var time = new Microsoft.Extensions.Time.Testing.FakeTimeProvider(DateTimeOffset.FromUnixTimeSeconds(0x5f5e1000));

        var trace = Invocation.NewTraceId(time);

        Assert.Matches(XRayHeader(), trace);
        Assert.StartsWith("Root=1-5f5e1000-", trace, StringComparison.Ordinal);
        Assert.NotEqual(trace, Invocation.NewTraceId(time));
    }
}
