using System.Text.Json;
using Lamina.Server.ApiGateway;

namespace Lamina.Tests.ApiGateway;

public sealed class HttpOpenApiImportTests
{
    private const string Uri = "arn:aws:apigateway:us-east-1:lambda:path/2015-03-31/functions/arn:aws:lambda:us-east-1:000000000000:function:Hello/invocations";
    private static readonly DateTimeOffset Now = new(2026, 1, 2, 3, 4, 5, TimeSpan.Zero);

    /// <summary>What SAM generates for HttpApi events (a route, the $default route, a JWT and a Lambda authorizer, CORS), intrinsics resolved.</summary>
    private static readonly string Sam = $$"""
        {
          "openapi": "3.0.1",
          "info": { "version": "1.0", "title": "sam-http" },
          "x-amazon-apigateway-cors": { "allowOrigins": ["https://example.com"], "allowMethods": ["GET"], "maxAge": 600 },
          "paths": {
            "/hello/{name}": {
              "get": {
                "x-amazon-apigateway-integration": { "httpMethod": "POST", "type": "aws_proxy", "uri": "{{Uri}}", "payloadFormatVersion": "2.0" },
                "security": [{ "OAuth": ["read"] }],
                "responses": {}
              }
            },
            "$default": {
              "x-amazon-apigateway-any-method": {
                "isDefaultRoute": true,
                "x-amazon-apigateway-integration": { "httpMethod": "POST", "type": "aws_proxy", "uri": "{{Uri}}", "payloadFormatVersion": "1.0" },
                "security": [{ "LambdaAuth": [] }],
                "responses": {}
              }
            }
          },
          "components": {
            "securitySchemes": {
              "OAuth": { "type": "oauth2", "x-amazon-apigateway-authorizer": { "type": "jwt", "identitySource": "$request.header.Authorization",
                "jwtConfiguration": { "issuer": "https://idp.example.com", "audience": ["app"] } } },
              "LambdaAuth": { "type": "apiKey", "in": "header", "name": "Unused", "x-amazon-apigateway-authorizer": { "type": "request",
                "authorizerUri": "{{Uri}}", "authorizerPayloadFormatVersion": "2.0", "enableSimpleResponses": true,
                "identitySource": "$request.header.Authorization", "authorizerResultTtlInSeconds": 300 } }
            }
          },
          "tags": [{ "name": "httpapi:createdBy", "x-amazon-apigateway-tag-value": "SAM" }]
        }
        """;

    private static StoredHttpApi? Build(string json, StoredHttpApi? existing, out string? error)
    {
        using var document = JsonDocument.Parse(json);
        return HttpOpenApiImport.Build(document.RootElement, "api1234567", existing, null, Now, [], out error);
    }

    [Fact]
    public void Build_SamHttpApi_RoutesIntegrationsAuthorizersCors()
    {
        var api = Build(Sam, null, out _)!;

        Assert.Equal(("sam-http", "HTTP", "SAM"), (api.Api.Name, api.Api.ProtocolType, api.Api.Tags!["httpapi:createdBy"]));
        Assert.Equal(["https://example.com"], api.Api.CorsConfiguration!.AllowOrigins);
        var hello = api.Routes.Single(r => r.RouteKey == "GET /hello/{name}");
        var fallback = api.Routes.Single(r => r.RouteKey == "$default");
        var jwt = api.Authorizers.Single(a => a.AuthorizerType == "JWT");
        var lambda = api.Authorizers.Single(a => a.AuthorizerType == "REQUEST");
        Assert.Equal(("JWT", jwt.AuthorizerId, "read"), (hello.AuthorizationType, hello.AuthorizerId, hello.AuthorizationScopes!.Single()));
        Assert.Equal(("CUSTOM", lambda.AuthorizerId), (fallback.AuthorizationType, fallback.AuthorizerId));
        Assert.Equal(("https://idp.example.com", "app"), (jwt.JwtConfiguration!.Issuer, jwt.JwtConfiguration.Audience!.Single()));
        Assert.Equal((true, 300, "2.0"), (lambda.EnableSimpleResponses, lambda.AuthorizerResultTtlInSeconds, lambda.AuthorizerPayloadFormatVersion));
        var integration = api.Integrations.Single(i => $"integrations/{i.IntegrationId}" == fallback.Target);
        Assert.Equal(("AWS_PROXY", "1.0", Uri, 30000), (integration.IntegrationType, integration.PayloadFormatVersion, integration.IntegrationUri, integration.TimeoutInMillis));
    }

    [Fact]
    public void Build_ReimportReplacesRoutesAndKeepsStages()
    {
        var first = Build(Sam, null, out _)! with { Stages = [new HttpStage { StageName = "$default", AutoDeploy = true }] };

        var again = Build("""{ "openapi": "3.0.1", "info": { "title": "sam-http" }, "paths": { "/only": { "post": { "x-amazon-apigateway-integration": { "type": "http_proxy", "uri": "https://example.com/x" } } } } }""",
            first, out _)!;

        Assert.Equal(["POST /only"], again.Routes.Select(r => r.RouteKey));
        Assert.Equal(("HTTP_PROXY", "1.0", "ANY"), (again.Integrations.Single().IntegrationType, again.Integrations.Single().PayloadFormatVersion, again.Integrations.Single().IntegrationMethod));
        Assert.Empty(again.Authorizers);
        Assert.Null(again.Api.CorsConfiguration);
        Assert.Equal("$default", again.Stages.Single().StageName);
        Assert.Equal(first.Api.ApiId, again.Api.ApiId);
    }

    [Theory]
    [InlineData("""{ "swagger": "2.0", "info": { "title": "t" } }""", "OpenAPI 3")]
    [InlineData("""{ "openapi": "3.0.1", "paths": {} }""", "info.title")]
    [InlineData("""{ "openapi": "3.0.1", "info": { "title": "t" }, "paths": { "/a": { "get": { "x-amazon-apigateway-integration": { "type": "aws_proxy", "uri": { "Fn::Sub": "x" } } } } } }""", "Fn::Sub")]
    [InlineData("""{ "openapi": "3.0.1", "info": { "title": "t" }, "paths": { "/a": { "get": { "x-amazon-apigateway-integration": { "type": "mock" } } } } }""", "aws_proxy or http_proxy")]
    [InlineData("""{ "openapi": "3.0.1", "info": { "title": "t" }, "components": { "securitySchemes": { "j": { "x-amazon-apigateway-authorizer": { "type": "jwt" } } } }, "paths": {} }""", "issuer")]
    public void Build_RefusesWithTheReason(string json, string reason)
    {
        Assert.Null(Build(json, null, out var error));
        Assert.Contains(reason, error);
    }
}
