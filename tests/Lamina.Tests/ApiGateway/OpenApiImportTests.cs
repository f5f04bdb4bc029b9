using System.Text.Json;
using Lamina.Server.ApiGateway;

namespace Lamina.Tests.ApiGateway;

public sealed class OpenApiImportTests
{
    private const string Uri = "arn:aws:apigateway:us-east-1:lambda:path/2015-03-31/functions/arn:aws:lambda:us-east-1:000000000000:function:Hello/invocations";
    private static readonly DateTimeOffset Now = new(2026, 1, 2, 3, 4, 5, TimeSpan.Zero);

    /// <summary>What SAM generates for an Api event with an authorizer and an API key, once its intrinsics are resolved.</summary>
    private static readonly string Sam = $$"""
        {
          "swagger": "2.0",
          "info": { "version": "1.0", "title": "sam-app" },
          "x-amazon-apigateway-binary-media-types": ["image/png"],
          "paths": {
            "/hello": {
              "get": {
                "x-amazon-apigateway-integration": { "httpMethod": "POST", "type": "aws_proxy", "uri": "{{Uri}}" },
                "responses": {},
                "security": [{ "MyAuth": [] }, { "api_key": [] }]
              }
            },
            "/items/{id}": {
              "parameters": [{ "name": "id", "in": "path", "required": true, "type": "string" }],
              "x-amazon-apigateway-any-method": {
                "operationId": "anyItem",
                "x-amazon-apigateway-integration": { "httpMethod": "POST", "type": "aws_proxy", "uri": "{{Uri}}", "timeoutInMillis": 5000 },
                "responses": {}
              }
            }
          },
          "securityDefinitions": {
            "MyAuth": {
              "type": "apiKey", "name": "Authorization", "in": "header",
              "x-amazon-apigateway-authtype": "custom",
              "x-amazon-apigateway-authorizer": { "type": "token", "authorizerUri": "{{Uri}}", "authorizerResultTtlInSeconds": 0 }
            },
            "api_key": { "type": "apiKey", "name": "x-api-key", "in": "header" }
          }
        }
        """;

    private static StoredRestApi? Build(string json, StoredRestApi? existing = null, OpenApiImport.Mode mode = OpenApiImport.Mode.Create, string? basePath = null)
    {
        using var document = JsonDocument.Parse(json);
        var warnings = new List<string>();
        return OpenApiImport.Build(document.RootElement, "api1234567", existing, mode, basePath, Now, warnings, out _);
    }

    private static string? Error(string json)
    {
        using var document = JsonDocument.Parse(json);
        OpenApiImport.Build(document.RootElement, "api1234567", null, OpenApiImport.Mode.Create, null, Now, [], out var error);
        return error;
    }

    [Fact]
    public void Build_SamDefinition_ResourcesMethodsAuthorizersAndSettings()
    {
        var api = Build(Sam)!;

        Assert.Equal(("sam-app", "1.0", "api1234567"), (api.Api.Name, api.Api.Version, api.Api.Id));
        Assert.Equal(["image/png"], api.Api.BinaryMediaTypes);
        var resources = OpenApiImport.ByPath(api);
        Assert.Equal(["/", "/hello", "/items", "/items/{id}"], resources.Keys.Order(StringComparer.Ordinal));
        Assert.Equal(api.Api.RootResourceId, resources["/"].Id);
        Assert.Equal(resources["/items"].Id, resources["/items/{id}"].ParentId);
        Assert.Equal("{id}", resources["/items/{id}"].PathPart);

        var hello = resources["/hello"].ResourceMethods!["GET"];
        var authorizer = Assert.Single(api.Authorizers);
        Assert.Equal(("MyAuth", "TOKEN", "method.request.header.Authorization", 0), (authorizer.Name, authorizer.Type, authorizer.IdentitySource, authorizer.AuthorizerResultTtlInSeconds));
        Assert.Equal(("CUSTOM", authorizer.Id, true), (hello.AuthorizationType, hello.AuthorizerId, hello.ApiKeyRequired));
        Assert.Equal(("AWS_PROXY", "POST", Uri, 29000), (hello.MethodIntegration!.Type, hello.MethodIntegration.HttpMethod, hello.MethodIntegration.Uri, hello.MethodIntegration.TimeoutInMillis));

        var any = resources["/items/{id}"].ResourceMethods!["ANY"];
        Assert.Equal(("NONE", false, "anyItem", 5000), (any.AuthorizationType, any.ApiKeyRequired, any.OperationName, any.MethodIntegration!.TimeoutInMillis));
        Assert.True(any.RequestParameters!["method.request.path.id"]);
    }

    [Fact]
    public void Build_OpenApi3_BasePathPrependedFromServers()
    {
        var json = $$"""
            { "openapi": "3.0.1", "info": { "title": "t" },
              "servers": [{ "url": "https://x.example.com/{basePath}", "variables": { "basePath": { "default": "/v1" } } }],
              "paths": { "/a": { "post": { "x-amazon-apigateway-integration": { "type": "aws_proxy", "httpMethod": "POST", "uri": "{{Uri}}" } } } } }
            """;

        Assert.Contains("/v1/a", OpenApiImport.ByPath(Build(json, basePath: "prepend")!).Keys);
        Assert.Contains("/a", OpenApiImport.ByPath(Build(json, basePath: "ignore")!).Keys);
    }

    [Fact]
    public void Build_MergeKeepsAndOverwriteReplaces()
    {
        var first = Build(Sam)!;
        var second = """{ "swagger": "2.0", "info": { "title": "sam-app", "version": "2" }, "paths": { "/new": { "get": { "responses": {} } } } }""";

        var merged = Build(second, first, OpenApiImport.Mode.Merge)!;
        var overwritten = Build(second, first, OpenApiImport.Mode.Overwrite)!;

        Assert.Equal(["/", "/hello", "/items", "/items/{id}", "/new"], OpenApiImport.ByPath(merged).Keys.Order(StringComparer.Ordinal));
        Assert.Equal(first.Api.RootResourceId, OpenApiImport.ByPath(merged)["/"].Id);
        Assert.Equal(OpenApiImport.ByPath(first)["/hello"].Id, OpenApiImport.ByPath(merged)["/hello"].Id);
        Assert.Equal(["/", "/new"], OpenApiImport.ByPath(overwritten).Keys.Order(StringComparer.Ordinal));
        Assert.Empty(overwritten.Authorizers);
        Assert.Equal(("2", first.Api.Id), (overwritten.Api.Version, overwritten.Api.Id));
    }

    [Fact]
    public void Build_IgnoredExtensionsAndMissingIntegrationsAreWarnings()
    {
        using var document = JsonDocument.Parse("""
            { "swagger": "2.0", "info": { "title": "w" }, "x-amazon-apigateway-gateway-responses": {},
              "paths": { "/a": { "get": { "responses": {} } } } }
            """);
        var warnings = new List<string>();

        Assert.NotNull(OpenApiImport.Build(document.RootElement, "api1234567", null, OpenApiImport.Mode.Create, null, Now, warnings, out _));
        Assert.Equal(2, warnings.Count);
    }

    [Theory]
    [InlineData("""{ "paths": {} }""", "neither Swagger 2.0")]
    [InlineData("""{ "openapi": "3.0.1", "paths": {} }""", "info.title")]
    [InlineData("""{ "swagger": "2.0", "info": { "title": "t" }, "paths": { "/a/{p+}/b": {} } }""", "greedy")]
    [InlineData("""{ "swagger": "2.0", "info": { "title": "t" }, "paths": { "/a": { "get": { "x-amazon-apigateway-integration": { "type": "aws_proxy", "uri": { "Fn::Sub": "x" } } } } } }""", "Fn::Sub")]
    [InlineData("""{ "swagger": "2.0", "info": { "title": "t" }, "paths": { "/a": { "get": { "x-amazon-apigateway-integration": { "type": "aws_proxy", "uri": "arn:aws:s3:::b" } } } } }""", "Lambda function")]
    [InlineData("""{ "swagger": "2.0", "info": { "title": "t" }, "paths": { "/a": { "get": { "x-amazon-apigateway-integration": { "type": "soap" } } } } }""", "type soap")]
    [InlineData("""{ "swagger": "2.0", "info": { "title": "t" }, "securityDefinitions": { "c": { "type": "apiKey", "x-amazon-apigateway-authorizer": { "type": "cognito_user_pools" } } }, "paths": {} }""", "Cognito")]
    public void Build_RefusesWithTheReason(string json, string reason)
    {
        Assert.Contains(reason, Error(json));
    }
}
