using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using Lamina.Server.Protocols;

namespace Lamina.Server.ApiGateway;

/// <summary>
/// One request through an API, as it goes: where it was routed, who the authorizers said the caller is, what the
/// integration did, and what was answered. The events are built from it, and the access log line (its
/// <c>$context</c> variables) at the end.
/// </summary>
internal sealed partial class ApiExchange
{
    public required LiveApi Api { get; init; }

    /// <summary><c>arn:aws:execute-api:REGION:ACCOUNT:apiId</c>.</summary>
    public required string ExecuteApiArn { get; init; }
    public required string RequestId { get; init; }
    public required DateTimeOffset RequestTime { get; init; }
    public required long StartTimestamp { get; init; }
    public required string HttpMethod { get; init; }
    public required string DomainName { get; init; }
    public required string Protocol { get; init; }
    public required string SourceIp { get; init; }
    public required string UserAgent { get; init; }

    /// <summary>The path as sent, after the host or <c>/_aws/execute-api/ID</c> prefix: the stage's segment included.</summary>
    public required string RawPath { get; init; }
    public required string RawQuery { get; init; }

    public LiveStage? Stage { get; set; }

    /// <summary>The path after the stage (REST APIs, and HTTP API stages other than <c>$default</c>), decoded.</summary>
    public string StagePath { get; set; } = "/";

    /// <summary>The raw path after the stage (what a REST API's <c>path</c> shows).</summary>
    public string RawStagePath { get; set; } = "/";

    public LiveRoute? Route { get; set; }
    public Dictionary<string, string>? PathParameters { get; set; }

    // Authorization.
    public AuthorizerDecision? Authorization { get; set; }
    public Dictionary<string, string>? JwtClaims { get; set; }
    public List<string>? JwtScopes { get; set; }
    public CallerIdentity? IamCaller { get; set; }
    public string? AuthorizerError { get; set; }
    public double? AuthorizerLatencyMs { get; set; }
    public ApiKey? UsedApiKey { get; set; }

    // Integration.
    public string? IntegrationRequestId { get; set; }
    public int? IntegrationStatus { get; set; }
    public int? IntegrationFunctionStatus { get; set; }
    public double? IntegrationLatencyMs { get; set; }
    public string? IntegrationError { get; set; }

    // Answer.
    public int Status { get; set; }
    public long ResponseLength { get; set; }
    public string? ErrorMessage { get; set; }
    public string? ErrorResponseType { get; set; }
    public double ResponseLatencyMs { get; set; }

    public string StageName => Stage?.Name ?? "-";

    public string DomainPrefix => DomainName.Split('.', 2)[0];

    /// <summary>The route's method and path as an ARN suffix sees the request (a Lambda authorizer's <c>methodArn</c>).</summary>
    public string MethodArn() => $"{ExecuteApiArn}/{StageName}/{HttpMethod}{StagePath}";

    [GeneratedRegex(@"\$context\.(?<name>[a-zA-Z0-9_.]+)", RegexOptions.CultureInvariant)]
    private static partial Regex ContextVariable();

    /// <summary>The access log line: <paramref name="format"/> with each <c>$context.*</c> variable replaced (<c>-</c> when it has no value).</summary>
    public string FormatAccessLog(string format, string accountId) =>
        ContextVariable().Replace(format, match =>
        {
            // A variable at the end of a sentence: its full stop is not part of the name.
            var name = match.Groups["name"].Value;
            var trimmed = name.TrimEnd('.');
            return (Variable(trimmed, accountId) ?? "-") + name[trimmed.Length..];
        });

    /// <summary>The value of <c>$context.NAME</c>, <c>-</c> for a known variable without a value, null for an unknown name.</summary>
    public string? Variable(string name, string accountId)
    {
        static string Or(string? value) => string.IsNullOrEmpty(value) ? "-" : value;
        static string Ms(double? value) => value is { } ms ? Math.Round(ms).ToString(CultureInfo.InvariantCulture) : "-";
        switch (name)
        {
            case "accountId": return accountId;
            case "apiId": return Api.ApiId;
            case "awsEndpointRequestId" or "integration.requestId": return Or(IntegrationRequestId);
            case "dataProcessed": return ResponseLength.ToString(CultureInfo.InvariantCulture);
            case "domainName": return DomainName;
            case "domainPrefix": return DomainPrefix;
            case "error.message": return Or(ErrorMessage);
            case "error.messageString": return ErrorMessage is null ? "-" : JsonSerializer.Serialize(ErrorMessage, LaminaJsonContext.Default.String);
            case "error.responseType": return Or(ErrorResponseType);
            case "extendedRequestId" or "requestId": return RequestId;
            case "httpMethod": return HttpMethod;
            case "identity.sourceIp": return SourceIp;
            case "identity.userAgent": return Or(UserAgent);
            case "identity.accountId": return Or(IamCaller?.AccountId);
            case "identity.caller" or "identity.accessKey": return Or(IamCaller?.AccessKeyId);
            case "identity.user": return Or(IamCaller?.AccountId);
            case "identity.userArn": return Or(IamCaller?.PrincipalArn);
            case "identity.apiKey": return Or(UsedApiKey?.Value);
            case "identity.apiKeyId": return Or(UsedApiKey?.Id);
            case "integration.error" or "integrationErrorMessage": return Or(IntegrationError);
            case "integration.integrationStatus" or "integrationStatus":
                return IntegrationFunctionStatus?.ToString(CultureInfo.InvariantCulture) ?? "-";
            case "integration.latency" or "integrationLatency": return Ms(IntegrationLatencyMs);
            case "integration.status": return IntegrationStatus?.ToString(CultureInfo.InvariantCulture) ?? "-";
            case "path": return RawPath;
            case "protocol": return Protocol;
            case "requestTime": return HttpProxyPayload.ClfTime(RequestTime);
            case "requestTimeEpoch": return RequestTime.ToUnixTimeMilliseconds().ToString(CultureInfo.InvariantCulture);
            case "resourceId": return Or(Route?.ResourceId);
            case "resourcePath": return Or(Route?.ResourcePath ?? Route?.RouteKey);
            case "responseLatency": return Ms(ResponseLatencyMs);
            case "responseLength": return ResponseLength.ToString(CultureInfo.InvariantCulture);
            case "routeKey": return Or(Route?.RouteKey);
            case "stage": return StageName;
            case "status": return Status.ToString(CultureInfo.InvariantCulture);
            case "authorizer.error": return Or(AuthorizerError);
            case "authorizer.principalId": return Or(Authorization?.PrincipalId);
            case "authorizer.latency" or "authorizer.integrationLatency": return Ms(AuthorizerLatencyMs);
            case "authorizer.claims": return "-";
        }
        if (name.StartsWith("authorizer.claims.", StringComparison.Ordinal))
        {
            return JwtClaims?.GetValueOrDefault(name["authorizer.claims.".Length..]) ?? "-";
        }
        if (name.StartsWith("authorizer.", StringComparison.Ordinal))
        {
            var key = name["authorizer.".Length..];
            return Authorization?.ContextValue(key) ?? "-";
        }
        if (name.StartsWith("identity.", StringComparison.Ordinal))
        {
            return "-"; // Cognito and client certificates: not in Lamina
        }
        return null;
    }

    /// <summary>A short text of the request for logs: <c>GET /prod/items/1</c>.</summary>
    public override string ToString() => new StringBuilder(HttpMethod).Append(' ').Append(RawPath).ToString();
}
