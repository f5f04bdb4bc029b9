using System.Diagnostics;
using System.Net;
using System.Text;
using System.Text.Json;
using Lamina.Server.ApiGateway;
using Lamina.Server.Hosting;
using Microsoft.AspNetCore.Http;

namespace Lamina.Tests.ApiGateway;

public sealed class ProxyEventsTests
{
    private static readonly LaminaOptions Options = new();
    private static readonly DateTimeOffset Time = new(2026, 3, 4, 5, 6, 7, 890, TimeSpan.Zero);

    private static DefaultHttpContext Request(string method, string path, string query = "", string? contentType = null, params (string Name, string Value)[] headers)
    {
        var context = new DefaultHttpContext();
        context.Request.Method = method;
        context.Request.Scheme = "http";
        context.Request.Host = new HostString("abcdefghij.execute-api.localhost", 9000);
        context.Request.Path = path;
        context.Request.QueryString = new QueryString(query);
        context.Request.Protocol = "HTTP/1.1";
        context.Request.ContentType = contentType;
        context.Connection.RemoteIpAddress = IPAddress.Loopback;
        context.Connection.LocalPort = 9000;
        foreach (var (name, value) in headers)
        {
            context.Request.Headers.Append(name, value);
        }
        return context;
    }

    /// <summary>An exchange routed as the data plane would: <paramref name="api"/>'s stage and the route matching the request.</summary>
    private static ApiExchange Exchange(HttpContext context, LiveApi api, string stage, string stagePath, string rawPath)
    {
        var exchange = new ApiExchange
        {
            Api = api,
            ExecuteApiArn = ApiArns.ExecuteApi(Options, api.ApiId),
            RequestId = "req-1",
            RequestTime = Time,
            StartTimestamp = Stopwatch.GetTimestamp(),
            HttpMethod = context.Request.Method,
            DomainName = context.Request.Host.Host,
            Protocol = "HTTP/1.1",
            SourceIp = "127.0.0.1",
            UserAgent = "test",
            RawPath = rawPath,
            RawQuery = context.Request.QueryString.Value?.TrimStart('?') ?? "",
            Stage = api.Stages[stage],
            StagePath = stagePath,
            RawStagePath = stagePath,
        };
        Assert.True(exchange.Stage.Routes.TryMatch(context.Request.Method, stagePath, out var route, out var parameters));
        exchange.Route = route;
        exchange.PathParameters = parameters;
        return exchange;
    }

    private static LiveApi HttpApi(string routeKey, string payload = "2.0", Dictionary<string, string>? variables = null)
    {
        var stored = new StoredHttpApi
        {
            Api = new HttpApi { ApiId = "abcdefghij", Name = "t", ProtocolType = "HTTP" },
            Stages = [new HttpStage { StageName = "$default", DeploymentId = "d1", StageVariables = variables }, new HttpStage { StageName = "prod", DeploymentId = "d1" }],
        };
        var snapshot = new HttpApiSnapshot
        {
            Routes = [new HttpRoute { RouteId = "r1", RouteKey = routeKey, Target = "integrations/i1" }],
            Integrations = [new HttpIntegration { IntegrationId = "i1", IntegrationType = "AWS_PROXY", PayloadFormatVersion = payload, IntegrationUri = "arn:aws:lambda:us-east-1:000000000000:function:f" }],
        };
        return LiveApi.Build(stored, Options, _ => snapshot);
    }

    private static LiveApi RestApi(Dictionary<string, string>? variables = null)
    {
        var stored = new StoredRestApi
        {
            Api = new RestApi { Id = "abcdefghij", Name = "t" },
            Stages = [new RestStage { StageName = "Prod", DeploymentId = "d1", Variables = variables }],
        };
        var snapshot = new RestApiSnapshot
        {
            Resources =
            [
                new RestResource { Id = "root", Path = "/" },
                new RestResource
                {
                    Id = "res1", ParentId = "root", PathPart = "{id}", Path = "/items/{id}",
                    ResourceMethods = new() { ["GET"] = new RestMethod { HttpMethod = "GET", AuthorizationType = "NONE", MethodIntegration = new RestIntegration { Type = "AWS_PROXY", Uri = "arn:aws:lambda:us-east-1:000000000000:function:f" } } },
                },
            ],
        };
        return LiveApi.Build(stored, Options, _ => snapshot);
    }

    private static JsonElement Parse(ReadOnlyMemory<byte> json) => JsonDocument.Parse(json).RootElement;

    [Fact]
    public void BuildV2_HttpApiEvent()
    {
        var context = Request("POST", "/items/42", "?a=1&a=2&b=x", "application/octet-stream", ("X-Test", "one"), ("X-Test", "two"), ("Cookie", "c1=v1; c2=v2"));
        var exchange = Exchange(context, HttpApi("POST /items/{id}", variables: new() { ["color"] = "blue" }), "$default", "/items/42", "/items/42");

        var e = Parse(ProxyEvents.BuildV2(context, exchange, new byte[] { 0, 255 }, "000000000000"));

        Assert.Equal("2.0", e.GetProperty("version").GetString());
        Assert.Equal("POST /items/{id}", e.GetProperty("routeKey").GetString());
        Assert.Equal(("/items/42", "a=1&a=2&b=x"), (e.GetProperty("rawPath").GetString(), e.GetProperty("rawQueryString").GetString()));
        Assert.Equal("one,two", e.GetProperty("headers").GetProperty("x-test").GetString());
        Assert.False(e.GetProperty("headers").TryGetProperty("cookie", out _));
        Assert.Equal(["c1=v1", "c2=v2"], e.GetProperty("cookies").EnumerateArray().Select(c => c.GetString()));
        Assert.Equal("1,2", e.GetProperty("queryStringParameters").GetProperty("a").GetString());
        Assert.Equal("42", e.GetProperty("pathParameters").GetProperty("id").GetString());
        Assert.Equal("blue", e.GetProperty("stageVariables").GetProperty("color").GetString());
        var rc = e.GetProperty("requestContext");
        Assert.Equal(("abcdefghij", "$default", "req-1", "000000000000"), (rc.GetProperty("apiId").GetString(), rc.GetProperty("stage").GetString(), rc.GetProperty("requestId").GetString(), rc.GetProperty("accountId").GetString()));
        Assert.Equal("04/Mar/2026:05:06:07 +0000", rc.GetProperty("time").GetString());
        Assert.Equal(Time.ToUnixTimeMilliseconds(), rc.GetProperty("timeEpoch").GetInt64());
        Assert.Equal(("POST", "/items/42", "127.0.0.1"), (rc.GetProperty("http").GetProperty("method").GetString(), rc.GetProperty("http").GetProperty("path").GetString(), rc.GetProperty("http").GetProperty("sourceIp").GetString()));
        Assert.True(e.GetProperty("isBase64Encoded").GetBoolean());
        Assert.Equal("AP8=", e.GetProperty("body").GetString());
    }

    [Fact]
    public void BuildV2_JwtClaimsAndLambdaContextAsAuthorizer()
    {
        var context = Request("GET", "/items/1");
        var exchange = Exchange(context, HttpApi("GET /items/{id}"), "$default", "/items/1", "/items/1");
        exchange.JwtClaims = new() { ["sub"] = "ann" };
        exchange.JwtScopes = ["read"];

        var jwt = Parse(ProxyEvents.BuildV2(context, exchange, default, "000000000000")).GetProperty("requestContext").GetProperty("authorizer").GetProperty("jwt");
        exchange.JwtClaims = null;
        exchange.Authorization = new AuthorizerDecision { SimpleAllowed = true, ContextJson = """{"user":"bob","n":1}""" };
        var lambda = Parse(ProxyEvents.BuildV2(context, exchange, default, "000000000000")).GetProperty("requestContext").GetProperty("authorizer").GetProperty("lambda");

        Assert.Equal(("ann", "read"), (jwt.GetProperty("claims").GetProperty("sub").GetString(), jwt.GetProperty("scopes")[0].GetString()));
        Assert.Equal(("bob", 1), (lambda.GetProperty("user").GetString(), lambda.GetProperty("n").GetInt32()));
    }

    [Fact]
    public void BuildV1_RestApiEvent()
    {
        var context = Request("GET", "/Prod/items/7", "?q=1&q=2", null, ("X-Test", "a"), ("X-Test", "b"));
        var exchange = Exchange(context, RestApi(), "Prod", "/items/7", "/Prod/items/7");

        var e = Parse(ProxyEvents.BuildV1(context, exchange, Encoding.UTF8.GetBytes("hello"), "000000000000", binaryAsBase64: false));

        Assert.False(e.TryGetProperty("version", out _));
        Assert.Equal(("/items/{id}", "/items/7", "GET"), (e.GetProperty("resource").GetString(), e.GetProperty("path").GetString(), e.GetProperty("httpMethod").GetString()));
        Assert.Equal("b", e.GetProperty("headers").GetProperty("X-Test").GetString());
        Assert.Equal(["a", "b"], e.GetProperty("multiValueHeaders").GetProperty("X-Test").EnumerateArray().Select(v => v.GetString()));
        Assert.Equal("127.0.0.1", e.GetProperty("headers").GetProperty("X-Forwarded-For").GetString());
        Assert.Equal("2", e.GetProperty("queryStringParameters").GetProperty("q").GetString());
        Assert.Equal(2, e.GetProperty("multiValueQueryStringParameters").GetProperty("q").GetArrayLength());
        Assert.Equal("7", e.GetProperty("pathParameters").GetProperty("id").GetString());
        Assert.Equal(JsonValueKind.Null, e.GetProperty("stageVariables").ValueKind);
        var rc = e.GetProperty("requestContext");
        Assert.Equal(("/Prod/items/7", "Prod", "res1", "/items/{id}"), (rc.GetProperty("path").GetString(), rc.GetProperty("stage").GetString(), rc.GetProperty("resourceId").GetString(), rc.GetProperty("resourcePath").GetString()));
        Assert.Equal("04/Mar/2026:05:06:07 +0000", rc.GetProperty("requestTime").GetString());
        Assert.Equal(JsonValueKind.Null, rc.GetProperty("identity").GetProperty("accessKey").ValueKind);
        Assert.False(rc.TryGetProperty("authorizer", out _));
        Assert.Equal(("hello", false), (e.GetProperty("body").GetString(), e.GetProperty("isBase64Encoded").GetBoolean()));
    }

    [Fact]
    public void BuildV1_EmptyMapsAreNullAndCustomAuthorizerContextIsStrings()
    {
        var context = Request("GET", "/Prod/items/7");
        var exchange = Exchange(context, RestApi(), "Prod", "/items/7", "/Prod/items/7");
        exchange.Authorization = new AuthorizerDecision { PrincipalId = "user1", ContextJson = """{"n":1,"ok":true,"s":"x"}""" };

        var e = Parse(ProxyEvents.BuildV1(context, exchange, default, "000000000000", binaryAsBase64: false));

        Assert.Equal(JsonValueKind.Null, e.GetProperty("queryStringParameters").ValueKind);
        Assert.Equal(JsonValueKind.Null, e.GetProperty("multiValueQueryStringParameters").ValueKind);
        Assert.Equal(JsonValueKind.Null, e.GetProperty("body").ValueKind);
        var authorizer = e.GetProperty("requestContext").GetProperty("authorizer");
        Assert.Equal(("user1", "1", "true", "x"), (authorizer.GetProperty("principalId").GetString(), authorizer.GetProperty("n").GetString(), authorizer.GetProperty("ok").GetString(), authorizer.GetProperty("s").GetString()));
    }

    [Fact]
    public void BuildV1_HttpApiFormat10HasVersionAndLowerCaseHeaders()
    {
        var context = Request("GET", "/prod/items/3", "", null, ("X-Test", "a"));
        var exchange = Exchange(context, HttpApi("GET /items/{id}", "1.0"), "prod", "/items/3", "/prod/items/3");

        var e = Parse(ProxyEvents.BuildV1(context, exchange, default, "000000000000", binaryAsBase64: true));

        Assert.Equal(("1.0", "/prod/items/3"), (e.GetProperty("version").GetString(), e.GetProperty("path").GetString()));
        Assert.Equal("a", e.GetProperty("headers").GetProperty("x-test").GetString());
        Assert.Equal(JsonValueKind.Null, e.GetProperty("requestContext").GetProperty("authorizer").GetProperty("claims").ValueKind);
    }

    [Fact]
    public void Authorizers_EventsCarryTheirArnAndIdentity()
    {
        var context = Request("GET", "/items/9", "", null, ("Authorization", "token-1"));
        var exchange = Exchange(context, HttpApi("GET /items/{id}"), "$default", "/items/9", "/items/9");

        var v2 = Parse(ProxyEvents.BuildV2Authorizer(context, exchange, "000000000000", ["token-1"]));
        var token = Parse(ProxyEvents.BuildToken(exchange, "token-1"));

        Assert.Equal(("REQUEST", "arn:aws:execute-api:us-east-1:000000000000:abcdefghij/$default/GET/items/9"), (v2.GetProperty("type").GetString(), v2.GetProperty("routeArn").GetString()));
        Assert.Equal("token-1", v2.GetProperty("identitySource")[0].GetString());
        Assert.False(v2.TryGetProperty("body", out _));
        Assert.Equal(("TOKEN", "token-1"), (token.GetProperty("type").GetString(), token.GetProperty("authorizationToken").GetString()));
        Assert.Equal("arn:aws:execute-api:us-east-1:000000000000:abcdefghij/$default/GET/items/9", token.GetProperty("methodArn").GetString());
    }

    [Fact]
    public void LiveApi_SourceArnsAreTheRouteKeysOfEachStage()
    {
        var http = HttpApi("GET /items/{id}");
        var rest = RestApi();

        Assert.True(http.Stages["prod"].Routes.TryMatch("GET", "/items/1", out var httpRoute, out _));
        Assert.True(rest.Stages["Prod"].Routes.TryMatch("GET", "/items/1", out var restRoute, out _));

        Assert.Equal("arn:aws:execute-api:us-east-1:000000000000:abcdefghij/prod/GET/items/{id}", httpRoute.SourceArn);
        Assert.Equal("arn:aws:execute-api:us-east-1:000000000000:abcdefghij/Prod/GET/items/{id}", restRoute.SourceArn);
        var defaultRoute = HttpApi("$default");
        Assert.True(defaultRoute.Stages["$default"].Routes.TryMatch("DELETE", "/any/thing", out var fallback, out _));
        Assert.Equal("arn:aws:execute-api:us-east-1:000000000000:abcdefghij/$default/$default", fallback.SourceArn);
    }

    [Fact]
    public void AccessLog_ContextVariablesReplaced()
    {
        var context = Request("GET", "/items/5");
        var exchange = Exchange(context, HttpApi("GET /items/{id}"), "$default", "/items/5", "/items/5");
        exchange.Status = 200;
        exchange.ResponseLength = 17;
        exchange.IntegrationLatencyMs = 12.4;
        exchange.Authorization = new AuthorizerDecision { SimpleAllowed = true, ContextJson = """{"user":"ann"}""" };

        var line = exchange.FormatAccessLog("""{"id":"$context.requestId","route":"$context.routeKey","status":$context.status,"user":"$context.authorizer.user","err":"$context.integrationErrorMessage"} ip=$context.identity.sourceIp. len=$context.responseLength""", "000000000000");

        Assert.Equal("""{"id":"req-1","route":"GET /items/{id}","status":200,"user":"ann","err":"-"} ip=127.0.0.1. len=17""", line);
        Assert.Equal("12", exchange.Variable("integrationLatency", "000000000000"));
        Assert.Null(exchange.Variable("noSuchVariable", "000000000000"));
    }
}
