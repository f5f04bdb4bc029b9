using Lamina.Server.ApiGateway;

namespace Lamina.Tests.ApiGateway;

public sealed class LiveAuthorizerTests
{
    [Fact]
    public void TakeSweep_LetsOneCallerSweepAFullCache_OnceASecond()
    {
        var authorizer = new LiveAuthorizer
        {
            Id = "abc123",
            Name = "tokens",
            Type = "REQUEST",
            IdentitySources = ["$request.header.Authorization"],
            SourceArn = "arn:aws:execute-api:us-east-1:000000000000:api1/authorizers/abc123",
        };
        var now = new DateTimeOffset(2026, 12, 7, 12, 0, 0, TimeSpan.Zero);

        Assert.True(authorizer.TakeSweep(now));
        Assert.False(authorizer.TakeSweep(now.AddMilliseconds(999))); // a full cache refuses the request's decision, unwalked
        Assert.True(authorizer.TakeSweep(now.AddSeconds(1)));
        Assert.False(authorizer.TakeSweep(now.AddSeconds(1)));
    }
}
