using System.Globalization;
using System.Text.Json;
using Lamina.Server.Lambda;

namespace Lamina.Server.ApiGateway;

/// <summary>
/// What a Lambda authorizer answered, as API Gateway reads it: a simple answer (<c>isAuthorized</c>, HTTP APIs with
/// simple responses) or an IAM policy whose <c>execute-api:Invoke</c> statements are matched against each request's
/// ARN (a cached policy decides for other routes too, as on AWS); the principal, the context map passed on to the
/// integration, and a REST API's <c>usageIdentifierKey</c>.
/// </summary>
internal sealed record AuthorizerDecision
{
    public bool? SimpleAllowed { get; init; }
    public IReadOnlyList<PolicyRule> Rules { get; init; } = [];
    public string? PrincipalId { get; init; }

    /// <summary>The <c>context</c> object (raw JSON of an object), or null.</summary>
    public string? ContextJson { get; init; }

    public string? UsageIdentifierKey { get; init; }

    /// <summary>Whether the request whose ARN is <paramref name="methodArn"/> may pass: an explicit Deny wins, then any Allow.</summary>
    public bool Allows(string methodArn)
    {
        if (SimpleAllowed is { } simple)
        {
            return simple;
        }
        var allowed = false;
        foreach (var rule in Rules)
        {
            if (rule.Matches(methodArn))
            {
                if (!rule.Allow)
                {
                    return false;
                }
                allowed = true;
            }
        }
        return allowed;
    }

    /// <summary>True when some statement denies the request explicitly (a REST API's message says so).</summary>
    public bool ExplicitlyDenies(string methodArn) => Rules.Any(r => !r.Allow && r.Matches(methodArn));

    /// <summary>The context's value for <paramref name="key"/> as a string (numbers and booleans as JSON writes them).</summary>
    public string? ContextValue(string key)
    {
        if (ContextJson is null)
        {
            return null;
        }
        using var document = JsonDocument.Parse(ContextJson);
        return document.RootElement.TryGetProperty(key, out var value)
            ? value.ValueKind == JsonValueKind.String ? value.GetString() : value.GetRawText()
            : null;
    }

    /// <summary>
    /// Reads an authorizer function's result. <paramref name="simple"/>: an HTTP API authorizer with simple responses
    /// (<c>{"isAuthorized": bool, "context": {...}}</c>); otherwise an IAM policy. Null (with the reason) when malformed.
    /// </summary>
    public static AuthorizerDecision? Parse(ReadOnlyMemory<byte> result, bool simple, out string? reason)
    {
        reason = null;
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(result);
        }
        catch (JsonException)
        {
            reason = "The authorizer's response is not JSON.";
            return null;
        }
        using (document)
        {
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
            {
                reason = "The authorizer's response is not a JSON object.";
                return null;
            }
            string? context = null;
            if (root.TryGetProperty("context", out var contextElement) && contextElement.ValueKind == JsonValueKind.Object)
            {
                context = contextElement.GetRawText();
            }
            else if (contextElement.ValueKind is not (JsonValueKind.Undefined or JsonValueKind.Null))
            {
                reason = "The authorizer's context must be an object.";
                return null;
            }
            if (simple)
            {
                if (!root.TryGetProperty("isAuthorized", out var authorized) || authorized.ValueKind is not (JsonValueKind.True or JsonValueKind.False))
                {
                    reason = "A simple response needs a boolean isAuthorized.";
                    return null;
                }
                return new AuthorizerDecision { SimpleAllowed = authorized.GetBoolean(), ContextJson = context };
            }
            if (!root.TryGetProperty("policyDocument", out var policy) || policy.ValueKind != JsonValueKind.Object
                || !policy.TryGetProperty("Statement", out var statements))
            {
                reason = "The authorizer's response has no policyDocument with a Statement.";
                return null;
            }
            var rules = new List<PolicyRule>();
            foreach (var statement in statements.ValueKind == JsonValueKind.Array ? statements.EnumerateArray() : Enumerable.Repeat(statements, 1))
            {
                if (statement.ValueKind != JsonValueKind.Object || !statement.TryGetProperty("Effect", out var effect) || effect.ValueKind != JsonValueKind.String)
                {
                    reason = "Each policy statement needs an Effect.";
                    return null;
                }
                var actions = Strings(statement, "Action");
                var resources = Strings(statement, "Resource");
                if (actions is null || resources is null)
                {
                    reason = "Each policy statement needs an Action and a Resource (a string or a list of strings).";
                    return null;
                }
                if (!actions.Any(static a => a is "*" or "execute-api:*" or "execute-api:Invoke"))
                {
                    continue; // a statement about other actions says nothing about invoking the API
                }
                rules.Add(new PolicyRule(string.Equals(effect.GetString(), "Allow", StringComparison.OrdinalIgnoreCase), resources));
            }
            var principal = root.TryGetProperty("principalId", out var principalElement) && principalElement.ValueKind == JsonValueKind.String
                ? principalElement.GetString()
                : principalElement.ValueKind == JsonValueKind.Number ? principalElement.GetRawText() : null;
            var usageKey = root.TryGetProperty("usageIdentifierKey", out var keyElement) && keyElement.ValueKind == JsonValueKind.String ? keyElement.GetString() : null;
            return new AuthorizerDecision { Rules = rules, PrincipalId = principal, ContextJson = context, UsageIdentifierKey = usageKey };
        }

        static List<string>? Strings(JsonElement statement, string name)
        {
            if (!statement.TryGetProperty(name, out var value))
            {
                return null;
            }
            return value.ValueKind switch
            {
                JsonValueKind.String => [value.GetString()!],
                JsonValueKind.Array when value.EnumerateArray().All(static v => v.ValueKind == JsonValueKind.String) => [.. value.EnumerateArray().Select(static v => v.GetString()!)],
                _ => null,
            };
        }
    }

    /// <summary>Writes the context's members into the object being written (an event's <c>authorizer</c>), values kept as JSON.</summary>
    public void WriteContextMembers(Utf8JsonWriter json, bool stringify)
    {
        if (ContextJson is null)
        {
            return;
        }
        using var document = JsonDocument.Parse(ContextJson);
        foreach (var member in document.RootElement.EnumerateObject())
        {
            if (stringify && member.Value.ValueKind is JsonValueKind.Number or JsonValueKind.True or JsonValueKind.False)
            {
                // REST APIs pass context values as strings ("1", "true"), as API Gateway does for payload 1.0.
                json.WriteString(member.Name, member.Value.GetRawText());
            }
            else
            {
                json.WritePropertyName(member.Name);
                member.Value.WriteTo(json);
            }
        }
    }
}

/// <summary>One policy statement about <c>execute-api:Invoke</c>: Allow or Deny for these resource ARN patterns.</summary>
internal sealed record PolicyRule(bool Allow, IReadOnlyList<string> Resources)
{
    public bool Matches(string methodArn) => Resources.Any(r => r == "*" || PolicyStatement.ArnLike(r, methodArn));
}

/// <summary>Renders a JWT claim as API Gateway passes claims on: strings as they are, arrays as <c>[a b]</c>, the rest as JSON.</summary>
internal static class ClaimText
{
    public static string Of(JsonElement value) => value.ValueKind switch
    {
        JsonValueKind.String => value.GetString()!,
        JsonValueKind.Array => "[" + string.Join(' ', value.EnumerateArray().Select(Of)) + "]",
        JsonValueKind.Number => value.TryGetInt64(out var n) ? n.ToString(CultureInfo.InvariantCulture) : value.GetRawText(),
        _ => value.GetRawText(),
    };
}
