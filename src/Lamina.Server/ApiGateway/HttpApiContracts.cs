using System.Collections.Immutable;

namespace Lamina.Server.ApiGateway;

// HTTP APIs (apigatewayv2, 2018-11-29): the wire shapes of botocore's model, which are also what Lamina stores. Names
// are lowerCamel on the wire (ApiGatewayJsonContext's policy); absent members are not written. A Create request is read
// into the same record as the resource (its id members unset); an Update (PATCH) request too, and only the members it
// carries replace the stored ones.

/// <summary>An HTTP API (the model's <c>Api</c>), plus CreateApi's quick-create members (never stored).</summary>
internal sealed record HttpApi
{
    public string? ApiEndpoint { get; init; }
    public bool? ApiGatewayManaged { get; init; }
    public string? ApiId { get; init; }
    public string? ApiKeySelectionExpression { get; init; }
    public ApiCors? CorsConfiguration { get; init; }
    public DateTimeOffset? CreatedDate { get; init; }
    public string? Description { get; init; }
    public bool? DisableSchemaValidation { get; init; }
    public bool? DisableExecuteApiEndpoint { get; init; }
    public List<string>? ImportInfo { get; init; }
    public string? IpAddressType { get; init; }
    public string? Name { get; init; }
    public string? ProtocolType { get; init; }
    public string? RouteSelectionExpression { get; init; }
    public Dictionary<string, string>? Tags { get; init; }
    public string? Version { get; init; }
    public List<string>? Warnings { get; init; }

    // CreateApi (quick create) and UpdateApi only.
    public string? CredentialsArn { get; init; }
    public string? RouteKey { get; init; }
    public string? Target { get; init; }
}

/// <summary>The CORS settings of an HTTP API (the model's <c>Cors</c>).</summary>
internal sealed record ApiCors
{
    public bool? AllowCredentials { get; init; }
    public List<string>? AllowHeaders { get; init; }
    public List<string>? AllowMethods { get; init; }
    public List<string>? AllowOrigins { get; init; }
    public List<string>? ExposeHeaders { get; init; }
    public int? MaxAge { get; init; }
}

internal sealed record HttpRoute
{
    public bool? ApiGatewayManaged { get; init; }
    public bool? ApiKeyRequired { get; init; }
    public List<string>? AuthorizationScopes { get; init; }
    public string? AuthorizationType { get; init; }
    public string? AuthorizerId { get; init; }
    public string? ModelSelectionExpression { get; init; }
    public string? OperationName { get; init; }
    public Dictionary<string, string>? RequestModels { get; init; }
    public Dictionary<string, ParameterConstraints>? RequestParameters { get; init; }
    public string? RouteId { get; init; }
    public string? RouteKey { get; init; }
    public string? RouteResponseSelectionExpression { get; init; }
    public string? Target { get; init; }
}

internal sealed record ParameterConstraints
{
    public bool? Required { get; init; }
}

internal sealed record HttpIntegration
{
    public bool? ApiGatewayManaged { get; init; }
    public string? ConnectionId { get; init; }
    public string? ConnectionType { get; init; }
    public string? ContentHandlingStrategy { get; init; }
    public string? CredentialsArn { get; init; }
    public string? Description { get; init; }
    public string? IntegrationId { get; init; }
    public string? IntegrationMethod { get; init; }
    public string? IntegrationResponseSelectionExpression { get; init; }
    public string? IntegrationSubtype { get; init; }
    public string? IntegrationType { get; init; }
    public string? IntegrationUri { get; init; }
    public string? PassthroughBehavior { get; init; }
    public string? PayloadFormatVersion { get; init; }
    public Dictionary<string, string>? RequestParameters { get; init; }
    public Dictionary<string, string>? RequestTemplates { get; init; }
    public Dictionary<string, Dictionary<string, string>>? ResponseParameters { get; init; }
    public string? TemplateSelectionExpression { get; init; }
    public int? TimeoutInMillis { get; init; }
    public HttpTlsConfig? TlsConfig { get; init; }
}

internal sealed record HttpTlsConfig
{
    public string? ServerNameToVerify { get; init; }
}

internal sealed record HttpAuthorizer
{
    public string? AuthorizerCredentialsArn { get; init; }
    public string? AuthorizerId { get; init; }
    public string? AuthorizerPayloadFormatVersion { get; init; }
    public int? AuthorizerResultTtlInSeconds { get; init; }
    public string? AuthorizerType { get; init; }
    public string? AuthorizerUri { get; init; }
    public bool? EnableSimpleResponses { get; init; }
    public List<string>? IdentitySource { get; init; }
    public string? IdentityValidationExpression { get; init; }
    public JwtConfiguration? JwtConfiguration { get; init; }
    public string? Name { get; init; }
}

internal sealed record JwtConfiguration
{
    public List<string>? Audience { get; init; }
    public string? Issuer { get; init; }
}

internal sealed record HttpStage
{
    public HttpAccessLogSettings? AccessLogSettings { get; init; }
    public bool? ApiGatewayManaged { get; init; }
    public bool? AutoDeploy { get; init; }
    public string? ClientCertificateId { get; init; }
    public DateTimeOffset? CreatedDate { get; init; }
    public HttpRouteSettings? DefaultRouteSettings { get; init; }
    public string? DeploymentId { get; init; }
    public string? Description { get; init; }
    public string? LastDeploymentStatusMessage { get; init; }
    public DateTimeOffset? LastUpdatedDate { get; init; }
    public Dictionary<string, HttpRouteSettings>? RouteSettings { get; init; }
    public string? StageName { get; init; }
    public Dictionary<string, string>? StageVariables { get; init; }
    public Dictionary<string, string>? Tags { get; init; }
}

internal sealed record HttpAccessLogSettings
{
    public string? DestinationArn { get; init; }
    public string? Format { get; init; }
}

internal sealed record HttpRouteSettings
{
    public bool? DataTraceEnabled { get; init; }
    public bool? DetailedMetricsEnabled { get; init; }
    public string? LoggingLevel { get; init; }
    public int? ThrottlingBurstLimit { get; init; }
    public double? ThrottlingRateLimit { get; init; }
}

internal sealed record HttpDeployment
{
    public bool? AutoDeployed { get; init; }
    public DateTimeOffset? CreatedDate { get; init; }
    public string? DeploymentId { get; init; }
    public string? DeploymentStatus { get; init; }
    public string? DeploymentStatusMessage { get; init; }
    public string? Description { get; init; }

    // CreateDeployment only: the stage to point at the new deployment.
    public string? StageName { get; init; }
}

/// <summary>Get* list answers of apigatewayv2: <c>{"items": [...], "nextToken": ...}</c>.</summary>
internal sealed record HttpPage<T>(List<T> Items, string? NextToken);

/// <summary>ImportApi's and ReimportApi's body: the definition as a string.</summary>
internal sealed record HttpImportRequest
{
    public string? Body { get; init; }
}

internal sealed record HttpTags
{
    public Dictionary<string, string>? Tags { get; init; }
}

/// <summary>
/// What a deployment of an HTTP API freezes (what the data plane serves): its routes, integrations, authorizers and
/// CORS settings.
/// </summary>
internal sealed record HttpApiSnapshot
{
    public List<HttpRoute> Routes { get; init; } = [];
    public List<HttpIntegration> Integrations { get; init; } = [];
    public List<HttpAuthorizer> Authorizers { get; init; } = [];
    public ApiCors? Cors { get; init; }
}

/// <summary>
/// An HTTP API as Lamina stores it (one row of <c>apigw_apis</c>): the API and everything in it. Deployments' snapshots
/// are rows of their own (<c>apigw_deployments</c>).
/// </summary>
internal sealed record StoredHttpApi
{
    public required HttpApi Api { get; init; }
    public ImmutableList<HttpRoute> Routes { get; init; } = [];
    public ImmutableList<HttpIntegration> Integrations { get; init; } = [];
    public ImmutableList<HttpAuthorizer> Authorizers { get; init; } = [];
    public ImmutableList<HttpStage> Stages { get; init; } = [];
    public ImmutableList<HttpDeployment> Deployments { get; init; } = [];

    public HttpApiSnapshot Snapshot() => new()
    {
        Routes = [.. Routes],
        Integrations = [.. Integrations],
        Authorizers = [.. Authorizers],
        Cors = Api.CorsConfiguration,
    };
}
