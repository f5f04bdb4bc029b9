using System.Text.Json;
using Lamina.Server.ApiGateway;

namespace Lamina.Tests.ApiGateway;

public sealed class JwtValidatorTests
{
    private static readonly DateTimeOffset Now = DateTimeOffset.FromUnixTimeSeconds(1_800_000_000);

    private static JsonElement Claims(string json) => JsonDocument.Parse(json).RootElement;

    [Theory]
    [InlineData("""{"iss":"https://idp","aud":"app","exp":1800000100}""", null)]
    [InlineData("""{"iss":"https://idp","aud":["other","app"],"exp":1800000100,"nbf":1799999000,"iat":1799999000}""", null)]
    [InlineData("""{"iss":"https://idp","client_id":"app","exp":1800000100}""", null)]
    [InlineData("""{"iss":"https://evil","aud":"app","exp":1800000100}""", "iss")]
    [InlineData("""{"iss":"https://idp","aud":"other","exp":1800000100}""", "aud")]
    [InlineData("""{"iss":"https://idp","aud":"app","exp":1800000000}""", "expired")]
    [InlineData("""{"iss":"https://idp","aud":"app"}""", "expired")]
    [InlineData("""{"iss":"https://idp","aud":"app","exp":1800000100,"nbf":1800000050}""", "nbf")]
    [InlineData("""{"iss":"https://idp","aud":"app","exp":1800000100,"iat":1800000050}""", "iat")]
    public void Check_RegisteredClaims(string claims, string? failure)
    {
        var error = JwtValidator.Check(Claims(claims), "https://idp", ["app"], Now);

        if (failure is null)
        {
            Assert.Null(error);
        }
        else
        {
            Assert.Contains(failure, error);
        }
    }

    [Theory]
    [InlineData("""{"scope":"read write"}""", new[] { "read", "write" })]
    [InlineData("""{"scp":["a","b"]}""", new[] { "a", "b" })]
    [InlineData("""{"scp":"a b"}""", new[] { "a", "b" })]
    [InlineData("""{}""", new string[0])]
    public void Scopes_FromScopeOrScp(string claims, string[] expected)
    {
        Assert.Equal(expected, JwtValidator.Scopes(Claims(claims)));
    }

    [Fact]
    public void ClaimText_AsApiGatewayPassesClaims()
    {
        var claims = Claims("""{"s":"x","n":1800000000,"a":["p","q"],"b":true}""");

        Assert.Equal(("x", "1800000000", "[p q]", "true"),
            (ClaimText.Of(claims.GetProperty("s")), ClaimText.Of(claims.GetProperty("n")), ClaimText.Of(claims.GetProperty("a")), ClaimText.Of(claims.GetProperty("b"))));
    }
}
