using System.Diagnostics;
using Lamina.Server.Diagnostics;
using Microsoft.Extensions.Time.Testing;

namespace Lamina.Tests.Diagnostics;

/// <summary>Trace context from callers: X-Ray headers and W3C traceparent, as the runtime gets them.</summary>
public sealed class TracingTests
{
    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2026, 11, 23, 0, 0, 0, TimeSpan.Zero));

    [Fact]
    public void TryParseAmzn_RootParentSampled_IsTheW3CContext()
    {
        Assert.True(Tracing.TryParseAmzn("Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1", out var context));
        Assert.Equal("5759e988bd862e3fe1be46a994272793", context.TraceId.ToHexString());
        Assert.Equal("53995c3f42cd8ad8", context.SpanId.ToHexString());
        Assert.Equal(ActivityTraceFlags.Recorded, context.TraceFlags);
    }

    [Theory]
    [InlineData("")]
    [InlineData("Root=2-5759e988-bd862e3fe1be46a994272793")]
    [InlineData("Root=1-5759e988-bd862e3fe1be46a99427279")]
    [InlineData("Root=1-5759e988-bd862e3fe1be46a99427279z")]
    [InlineData("Root=1-5759e988-bd862e3fe1be46a994272793;Parent=xyz")]
    public void TryParseAmzn_Malformed_IsRefused(string header) => Assert.False(Tracing.TryParseAmzn(header, out _));

    [Fact]
    public void TraceHeader_PrefersXRay_ThenTraceparent_ElseANewRoot()
    {
        const string xray = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0";
        Assert.Equal(xray, Tracing.TraceHeader(xray, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", _time));
        Assert.Equal("Root=1-0af76519-16cd43dd8448eb211c80319c;Parent=b7ad6b7169203331;Sampled=1",
            Tracing.TraceHeader(null, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", _time));
        Assert.Matches("^Root=1-[0-9a-f]{8}-[0-9a-f]{24};Parent=[0-9a-f]{16};Sampled=0$", Tracing.TraceHeader("garbage", "also garbage", _time));
    }
}
