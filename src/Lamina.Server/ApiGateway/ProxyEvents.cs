using System.Buffers;
using System.Globalization;
using System.Text.Json;
using Lamina.Server.Protocols;

namespace Lamina.Server.ApiGateway;

/// <summary>
/// The events API Gateway sends to functions: payload 2.0 (HTTP APIs; built by <see cref="HttpProxyPayload"/>, which
/// function URLs share), payload 1.0 (REST APIs, and HTTP API integrations that ask for it), and Lambda authorizers'
/// events (REQUEST in both formats, REST's TOKEN).
/// </summary>
internal static class ProxyEvents
{
    /// <summary>The payload 2.0 event of an HTTP API integration.</summary>
    public static ReadOnlyMemory<byte> BuildV2(HttpContext context, ApiExchange exchange, ReadOnlyMemory<byte> body, string accountId) =>
        HttpProxyPayload.BuildV2Event(context, body, V2Parts(exchange, accountId) with
        {
            WriteAuthorizer = json => WriteV2Authorizer(json, exchange),
        });

    /// <summary>The payload 2.0 event of an HTTP API's Lambda authorizer (no body; type, routeArn and the identity values first).</summary>
    public static ReadOnlyMemory<byte> BuildV2Authorizer(HttpContext context, ApiExchange exchange, string accountId, IReadOnlyList<string> identity) =>
        HttpProxyPayload.BuildV2Event(context, ReadOnlyMemory<byte>.Empty, V2Parts(exchange, accountId) with
        {
            OmitBody = true,
            WriteLeading = json =>
            {
                json.WriteString("type", "REQUEST");
                json.WriteString("routeArn", exchange.MethodArn());
                json.WriteStartArray("identitySource");
                foreach (var value in identity)
                {
                    json.WriteStringValue(value);
                }
                json.WriteEndArray();
            },
        });

    private static V2EventParts V2Parts(ApiExchange exchange, string accountId) =>
        new(exchange.Route?.RouteKey ?? "$default", exchange.RawPath, exchange.RawQuery, exchange.StageName, exchange.Api.ApiId, exchange.DomainPrefix,
            accountId, exchange.RequestId, exchange.RequestTime)
        {
            PathParameters = exchange.PathParameters,
            StageVariables = exchange.Stage?.Variables,
        };

    private static void WriteV2Authorizer(Utf8JsonWriter json, ApiExchange exchange)
    {
        if (exchange.JwtClaims is { } claims)
        {
            json.WriteStartObject("authorizer");
            json.WriteStartObject("jwt");
            HttpProxyPayload.WriteMap(json, "claims", claims);
            WriteScopes(json, exchange.JwtScopes);
            json.WriteEndObject();
            json.WriteEndObject();
        }
        else if (exchange.Authorization is { } decision)
        {
            json.WriteStartObject("authorizer");
            json.WriteStartObject("lambda");
            decision.WriteContextMembers(json, stringify: false);
            json.WriteEndObject();
            json.WriteEndObject();
        }
        else if (exchange.IamCaller is { } caller)
        {
            HttpProxyPayload.WriteIamAuthorizer(json, caller);
        }
    }

    private static void WriteScopes(Utf8JsonWriter json, List<string>? scopes)
    {
        if (scopes is null or { Count: 0 })
        {
            json.WriteNull("scopes");
            return;
        }
        json.WriteStartArray("scopes");
        foreach (var scope in scopes)
        {
            json.WriteStringValue(scope);
        }
        json.WriteEndArray();
    }

    /// <summary>
    /// The payload 1.0 event: a REST API's proxy event, or an HTTP API's with format 1.0 (then <c>version</c> and
    /// lower-cased header names). <paramref name="binaryAsBase64"/>: whether a binary body is base64-encoded (REST: when
    /// a binary media type matches). <paramref name="leading"/> and <paramref name="forAuthorizer"/> make a REQUEST
    /// authorizer's event of it (its members first, no body, no authorizer context).
    /// </summary>
    public static ReadOnlyMemory<byte> BuildV1(HttpContext context, ApiExchange exchange, ReadOnlyMemory<byte> body, string accountId, bool binaryAsBase64,
        Action<Utf8JsonWriter>? leading = null, bool forAuthorizer = false)
    {
        var request = context.Request;
        var http = exchange.Api.IsHttp;
        var route = exchange.Route;
        var buffer = new ArrayBufferWriter<byte>(2048 + body.Length * 2);
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            if (http)
            {
                json.WriteString("version", "1.0");
            }
            leading?.Invoke(json);
            var resource = route?.ResourcePath ?? exchange.RawPath;
            var path = http ? exchange.RawPath : exchange.RawStagePath;
            json.WriteString("resource", resource);
            json.WriteString("path", path);
            json.WriteString("httpMethod", request.Method);

            // Headers: the last value of each (headers) and all of them (multiValueHeaders).
            var headers = new List<(string Name, string[] Values)>();
            foreach (var (name, values) in request.Headers)
            {
                headers.Add((http ? name.ToLowerInvariant() : name, values.Select(static v => v ?? "").ToArray()));
            }
            AddForwarded(context, headers, http);
            json.WriteStartObject("headers");
            foreach (var (name, values) in headers)
            {
                json.WriteString(name, values.Length > 0 ? values[^1] : "");
            }
            json.WriteEndObject();
            json.WriteStartObject("multiValueHeaders");
            foreach (var (name, values) in headers)
            {
                WriteArray(json, name, values);
            }
            json.WriteEndObject();
            if (request.Query.Count > 0)
            {
                json.WriteStartObject("queryStringParameters");
                foreach (var (name, values) in request.Query)
                {
                    json.WriteString(name, values.Count > 0 ? values[^1] : "");
                }
                json.WriteEndObject();
                json.WriteStartObject("multiValueQueryStringParameters");
                foreach (var (name, values) in request.Query)
                {
                    WriteArray(json, name, values.Select(static v => v ?? ""));
                }
                json.WriteEndObject();
            }
            else
            {
                json.WriteNull("queryStringParameters");
                json.WriteNull("multiValueQueryStringParameters");
            }

            json.WriteStartObject("requestContext");
            json.WriteString("accountId", accountId);
            json.WriteString("apiId", exchange.Api.ApiId);
            if (!forAuthorizer)
            {
                WriteV1Authorizer(json, exchange, http);
            }
            json.WriteString("domainName", exchange.DomainName);
            json.WriteString("domainPrefix", exchange.DomainPrefix);
            json.WriteString("extendedRequestId", exchange.RequestId);
            json.WriteString("httpMethod", request.Method);
            json.WriteStartObject("identity");
            var caller = exchange.IamCaller;
            WriteNullable(json, "accessKey", caller?.AccessKeyId);
            WriteNullable(json, "accountId", caller?.AccountId);
            if (exchange.UsedApiKey is { } key)
            {
                json.WriteString("apiKey", key.Value);
                json.WriteString("apiKeyId", key.Id);
            }
            WriteNullable(json, "caller", caller?.AccessKeyId);
            json.WriteNull("cognitoAuthenticationProvider");
            json.WriteNull("cognitoAuthenticationType");
            json.WriteNull("cognitoIdentityId");
            json.WriteNull("cognitoIdentityPoolId");
            json.WriteNull("principalOrgId");
            json.WriteString("sourceIp", exchange.SourceIp);
            WriteNullable(json, "user", caller?.AccountId);
            json.WriteString("userAgent", exchange.UserAgent);
            WriteNullable(json, "userArn", caller?.PrincipalArn);
            json.WriteEndObject();
            if (route?.OperationName is { } operation)
            {
                json.WriteString("operationName", operation);
            }
            json.WriteString("path", http ? exchange.RawPath : "/" + exchange.StageName + (exchange.RawStagePath == "/" ? "/" : exchange.RawStagePath));
            json.WriteString("protocol", exchange.Protocol);
            json.WriteString("requestId", exchange.RequestId);
            json.WriteString("requestTime", HttpProxyPayload.ClfTime(exchange.RequestTime));
            json.WriteNumber("requestTimeEpoch", exchange.RequestTime.ToUnixTimeMilliseconds());
            if (http)
            {
                json.WriteString("resourceId", route?.RouteKey);
            }
            else
            {
                WriteNullable(json, "resourceId", route?.ResourceId);
            }
            json.WriteString("resourcePath", resource);
            json.WriteString("stage", exchange.StageName);
            json.WriteEndObject();

            if (exchange.PathParameters is { Count: > 0 } parameters)
            {
                HttpProxyPayload.WriteMap(json, "pathParameters", parameters);
            }
            else
            {
                json.WriteNull("pathParameters");
            }
            if (exchange.Stage?.Variables is { Count: > 0 } variables)
            {
                HttpProxyPayload.WriteMap(json, "stageVariables", variables);
            }
            else
            {
                json.WriteNull("stageVariables");
            }
            if (!forAuthorizer)
            {
                if (body.IsEmpty)
                {
                    json.WriteNull("body");
                    json.WriteBoolean("isBase64Encoded", false);
                }
                else
                {
                    HttpProxyPayload.WriteBody(json, request.ContentType, body, binaryAsBase64);
                }
            }
            json.WriteEndObject();
        }
        return buffer.WrittenMemory;
    }

    private static void WriteV1Authorizer(Utf8JsonWriter json, ApiExchange exchange, bool http)
    {
        if (exchange.JwtClaims is { } claims)
        {
            json.WriteStartObject("authorizer");
            HttpProxyPayload.WriteMap(json, "claims", claims);
            WriteScopes(json, exchange.JwtScopes);
            json.WriteEndObject();
        }
        else if (exchange.Authorization is { } decision)
        {
            json.WriteStartObject("authorizer");
            decision.WriteContextMembers(json, stringify: !http);
            WriteNullable(json, "principalId", decision.PrincipalId);
            json.WriteNumber("integrationLatency", Math.Round(exchange.AuthorizerLatencyMs ?? 0));
            json.WriteEndObject();
        }
        else if (http)
        {
            json.WriteStartObject("authorizer");
            json.WriteNull("claims");
            json.WriteNull("scopes");
            json.WriteEndObject();
        }
    }

    /// <summary>The payload 1.0 event of a REQUEST authorizer (REST APIs; HTTP APIs with format 1.0).</summary>
    public static ReadOnlyMemory<byte> BuildV1Authorizer(HttpContext context, ApiExchange exchange, string accountId, IReadOnlyList<string> identity) =>
        BuildV1(context, exchange, ReadOnlyMemory<byte>.Empty, accountId, binaryAsBase64: false, json =>
        {
            json.WriteString("type", "REQUEST");
            json.WriteString("methodArn", exchange.MethodArn());
            if (exchange.Api.IsHttp)
            {
                json.WriteString("identitySource", string.Join(',', identity));
                json.WriteString("authorizationToken", string.Join(',', identity));
            }
        }, forAuthorizer: true);

    /// <summary>A REST TOKEN authorizer's event: the token and the method's ARN.</summary>
    public static ReadOnlyMemory<byte> BuildToken(ApiExchange exchange, string token)
    {
        var buffer = new ArrayBufferWriter<byte>(512 + token.Length);
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            json.WriteString("type", "TOKEN");
            json.WriteString("authorizationToken", token);
            json.WriteString("methodArn", exchange.MethodArn());
            json.WriteEndObject();
        }
        return buffer.WrittenMemory;
    }

    private static void AddForwarded(HttpContext context, List<(string Name, string[] Values)> headers, bool lower)
    {
        void Add(string name, string value)
        {
            if (!headers.Any(h => string.Equals(h.Name, name, StringComparison.OrdinalIgnoreCase)))
            {
                headers.Add((lower ? name.ToLowerInvariant() : name, [value]));
            }
        }
        Add("X-Forwarded-For", HttpProxyPayload.SourceIp(context));
        Add("X-Forwarded-Port", context.Connection.LocalPort.ToString(CultureInfo.InvariantCulture));
        Add("X-Forwarded-Proto", context.Request.Scheme);
    }

    private static void WriteArray(Utf8JsonWriter json, string name, IEnumerable<string> values)
    {
        json.WriteStartArray(name);
        foreach (var value in values)
        {
            json.WriteStringValue(value);
        }
        json.WriteEndArray();
    }

    private static void WriteNullable(Utf8JsonWriter json, string name, string? value)
    {
        if (value is null)
        {
            json.WriteNull(name);
        }
        else
        {
            json.WriteString(name, value);
        }
    }
}
