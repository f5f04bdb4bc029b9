using System.Text;
using Lamina.Server.ApiGateway;
using Lamina.Server.Protocols;

namespace Lamina.Tests.ApiGateway;

public sealed class ProxyResultTests
{
    private static ReadOnlyMemory<byte> Json(string json) => Encoding.UTF8.GetBytes(json);

    [Fact]
    public void ParseV2_InfersWhatIsNotStructured()
    {
        var text = HttpProxyPayload.ParseV2Result(Json("\"Hello from Lambda!\""))!;
        var map = HttpProxyPayload.ParseV2Result(Json("""{"message":"hi"}"""))!;

        Assert.Equal((200, "Hello from Lambda!"), (text.StatusCode, Encoding.UTF8.GetString(text.Body)));
        Assert.Equal((200, """{"message":"hi"}"""), (map.StatusCode, Encoding.UTF8.GetString(map.Body)));
        Assert.Contains(new KeyValuePair<string, string>("Content-Type", "application/json"), map.Headers);
    }

    [Fact]
    public void ParseV2_StructuredWithCookiesAndBase64()
    {
        var response = HttpProxyPayload.ParseV2Result(Json("""{"statusCode":201,"headers":{"x-a":"1","x-n":2},"cookies":["a=1","b=2"],"body":"AAE=","isBase64Encoded":true}"""))!;

        Assert.Equal(201, response.StatusCode);
        Assert.Equal([new("x-a", "1"), new("x-n", "2")], response.Headers);
        Assert.Equal(["a=1", "b=2"], response.Cookies);
        Assert.True(response.IsBase64);
    }

    [Theory]
    [InlineData("""{"statusCode":"abc"}""")]
    [InlineData("""{"statusCode":99}""")]
    [InlineData("""{"statusCode":200,"body":"!!","isBase64Encoded":true}""")]
    [InlineData("""{"statusCode":200,"headers":{"x-split":"a\r\nx-injected: 1"}}""")]
    [InlineData("""{"statusCode":200,"headers":{"bad name":"v"}}""")]
    [InlineData("""{"statusCode":200,"headers":{"x-utf8":"café"}}""")]
    [InlineData("""{"statusCode":200,"cookies":["a=1\nb"]}""")]
    public void ParseV2_MalformedStructuredIsNull(string json)
    {
        Assert.Null(HttpProxyPayload.ParseV2Result(Json(json)));
    }

    [Fact]
    public void ParseV1_MultiValueHeadersWinForTheirNames()
    {
        var response = HttpProxyPayload.ParseV1Result(Json("""{"statusCode":"404","headers":{"x-a":"single","x-b":"b"},"multiValueHeaders":{"X-A":["m1","m2"]},"body":"nope"}"""))!;

        Assert.Equal(404, response.StatusCode);
        Assert.Equal([new("x-b", "b"), new("X-A", "m1"), new("X-A", "m2")], response.Headers);
        Assert.Equal("nope", Encoding.UTF8.GetString(response.Body));
    }

    [Theory]
    [InlineData("\"just text\"")]
    [InlineData("""{"hello":"world"}""")]
    [InlineData("""{"statusCode":200,"body":{"not":"a string"}}""")]
    [InlineData("""{"statusCode":200,"headers":["x"]}""")]
    [InlineData("""{"statusCode":200,"multiValueHeaders":{"x":"not a list"}}""")]
    [InlineData("not json")]
    public void ParseV1_MalformedIsNull(string json)
    {
        Assert.Null(HttpProxyPayload.ParseV1Result(Json(json)));
    }

    [Fact]
    public void AuthorizerDecision_SimpleResponse()
    {
        var allowed = AuthorizerDecision.Parse(Json("""{"isAuthorized":true,"context":{"k":"v"}}"""), simple: true, out _)!;
        var denied = AuthorizerDecision.Parse(Json("""{"isAuthorized":false}"""), simple: true, out _)!;

        Assert.True(allowed.Allows("arn:aws:execute-api:us-east-1:000000000000:a/s/GET/x"));
        Assert.Equal("v", allowed.ContextValue("k"));
        Assert.False(denied.Allows("arn:aws:execute-api:us-east-1:000000000000:a/s/GET/x"));
        Assert.Null(AuthorizerDecision.Parse(Json("""{"isAuthorized":"yes"}"""), simple: true, out var reason));
        Assert.Contains("isAuthorized", reason);
    }

    [Fact]
    public void AuthorizerDecision_PolicyMatchesTheMethodArnAndDenyWins()
    {
        const string Policy = """
            {"principalId":"u1","policyDocument":{"Version":"2012-10-17","Statement":[
              {"Action":"execute-api:Invoke","Effect":"Allow","Resource":"arn:aws:execute-api:us-east-1:000000000000:api/prod/GET/*"},
              {"Action":["execute-api:Invoke"],"Effect":"Deny","Resource":["arn:aws:execute-api:us-east-1:000000000000:api/prod/GET/secret"]}]},
             "context":{"n":1},"usageIdentifierKey":"key-1"}
            """;

        var decision = AuthorizerDecision.Parse(Json(Policy), simple: false, out _)!;

        Assert.Equal(("u1", "key-1", "1"), (decision.PrincipalId, decision.UsageIdentifierKey, decision.ContextValue("n")));
        Assert.True(decision.Allows("arn:aws:execute-api:us-east-1:000000000000:api/prod/GET/items/1"));
        Assert.False(decision.Allows("arn:aws:execute-api:us-east-1:000000000000:api/prod/POST/items"));
        Assert.False(decision.Allows("arn:aws:execute-api:us-east-1:000000000000:api/prod/GET/secret"));
        Assert.True(decision.ExplicitlyDenies("arn:aws:execute-api:us-east-1:000000000000:api/prod/GET/secret"));
    }

    [Theory]
    [InlineData("""{"principalId":"u"}""", "policyDocument")]
    [InlineData("""{"policyDocument":{"Statement":[{"Action":"execute-api:Invoke","Resource":"*"}]}}""", "Effect")]
    [InlineData("""{"policyDocument":{"Statement":[{"Effect":"Allow","Resource":1,"Action":"*"}]}}""", "Resource")]
    [InlineData("""{"policyDocument":{"Statement":[]},"context":"x"}""", "context")]
    [InlineData("[]", "not a JSON object")]
    public void AuthorizerDecision_MalformedPolicyIsRefusedWithTheReason(string json, string reason)
    {
        Assert.Null(AuthorizerDecision.Parse(Json(json), simple: false, out var why));
        Assert.Contains(reason, why);
    }

    [Theory]
    [InlineData("arn:aws:lambda:us-east-1:000000000000:function:f", "000000000000", "f", null)]
    [InlineData("arn:aws:lambda:us-east-1:111111111111:function:f:live", "111111111111", "f", "live")]
    [InlineData("arn:aws:apigateway:us-east-1:lambda:path/2015-03-31/functions/arn:aws:lambda:us-east-1:000000000000:function:f:$LATEST/invocations", "000000000000", "f", "$LATEST")]
    public void IntegrationTarget_ParsesBothForms(string uri, string account, string name, string? qualifier)
    {
        Assert.Equal(new IntegrationTarget(account, name, qualifier), IntegrationTarget.Parse(uri));
    }

    [Fact]
    public void IntegrationTarget_StageVariablesFirst()
    {
        var target = IntegrationTarget.Resolve("arn:aws:lambda:us-east-1:000000000000:function:f:${stageVariables.alias}", new Dictionary<string, string> { ["alias"] = "blue" });

        Assert.Equal("blue", target!.Qualifier);
        Assert.Null(IntegrationTarget.Parse("arn:aws:s3:::bucket"));
    }
}
