using System.Collections.Immutable;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace Lamina.Server.Lambda;

/// <summary>
/// The resource-based policy of one qualifier of a function (AddPermission / GetPolicy / RemovePermission): who besides
/// the function's own account may call it, and how. Lambda keeps one per qualifier: <c>$LATEST</c> (what an
/// unqualified request names), a version or an alias; a permission applies to invocations through exactly that ARN.
/// </summary>
/// <param name="Qualifier"><c>$LATEST</c>, a version number or an alias name.</param>
/// <param name="RevisionId">Changes on every Add/RemovePermission: their optimistic-concurrency token.</param>
/// <param name="Statements">The permissions, in the order they were added.</param>
internal sealed record ResourcePolicy(string Qualifier, string RevisionId, ImmutableArray<PolicyStatement> Statements)
{
    /// <summary>Lambda's limit on the policy document of one qualifier.</summary>
    public const int MaxLength = 20_480;

    /// <summary>The policy document as GetPolicy returns it (a JSON string, not an object).</summary>
    public string ToJson()
    {
        using var buffer = new MemoryStream();
        using (var writer = new Utf8JsonWriter(buffer))
        {
            writer.WriteStartObject();
            writer.WriteString("Version", "2012-10-17");
            writer.WriteString("Id", "default");
            writer.WriteStartArray("Statement");
            foreach (var statement in Statements)
            {
                statement.Write(writer);
            }
            writer.WriteEndArray();
            writer.WriteEndObject();
        }
        return System.Text.Encoding.UTF8.GetString(buffer.GetBuffer(), 0, (int)buffer.Length);
    }

    /// <summary>Whether any statement allows <paramref name="action"/> to <paramref name="caller"/>.</summary>
    public bool Allows(string action, PolicyCaller caller)
    {
        foreach (var statement in Statements)
        {
            if (statement.Allows(action, caller))
            {
                return true;
            }
        }
        return false;
    }
}

/// <summary>
/// Who asks and on whose behalf, as a policy condition sees it: the caller's account (a key's, or none for an anonymous
/// caller such as a function URL with AuthType NONE), the AWS service acting (for triggers), and the context keys
/// Lambda's conditions test.
/// </summary>
internal readonly record struct PolicyCaller(string? Account, string? Service = null, string? SourceArn = null, string? SourceAccount = null,
    string? FunctionUrlAuthType = null, bool ViaFunctionUrl = false);

/// <summary>
/// One permission as AddPermission takes it (every member but <see cref="Resource"/> is the request's). It is kept in
/// this form and written out as the IAM statement Lambda shows.
/// </summary>
internal sealed partial record PolicyStatement
{
    public required string Sid { get; init; }
    public required string Action { get; init; }
    public required string Principal { get; init; }

    /// <summary>The function ARN the permission was added to (qualified for a version or alias).</summary>
    public required string Resource { get; init; }

    public string? SourceArn { get; init; }
    public string? SourceAccount { get; init; }
    public string? PrincipalOrgId { get; init; }
    public string? EventSourceToken { get; init; }
    public string? FunctionUrlAuthType { get; init; }

    /// <summary>Only for invocations that come through the function's URL (a <c>Bool</c> condition).</summary>
    public bool? InvokedViaFunctionUrl { get; init; }

    [GeneratedRegex(@"^\d{12}\z", RegexOptions.CultureInvariant)]
    private static partial Regex AccountPattern();

    [GeneratedRegex(@"^arn:aws[a-zA-Z-]*:iam::(?<account>\d{12}):", RegexOptions.CultureInvariant)]
    private static partial Regex IamArnPattern();

    /// <summary>
    /// Whether this statement lets <paramref name="caller"/> perform <paramref name="action"/>. Every condition must
    /// hold; an organisation condition never does (Lamina has no organisations), nor does an event-source token (no
    /// Lamina caller presents one).
    /// </summary>
    public bool Allows(string action, PolicyCaller caller)
    {
        if (!ActionMatches(action) || !PrincipalMatches(caller))
        {
            return false;
        }
        if (PrincipalOrgId is not null || EventSourceToken is not null)
        {
            return false;
        }
        if (SourceAccount is not null && SourceAccount != caller.SourceAccount)
        {
            return false;
        }
        if (SourceArn is not null && (caller.SourceArn is null || !ArnLike(SourceArn, caller.SourceArn)))
        {
            return false;
        }
        if (InvokedViaFunctionUrl is { } viaUrl && viaUrl != caller.ViaFunctionUrl)
        {
            return false;
        }
        return FunctionUrlAuthType is null || FunctionUrlAuthType == caller.FunctionUrlAuthType;
    }

    private bool ActionMatches(string action) =>
        Action is "*" or "lambda:*" || string.Equals(Action, action, StringComparison.OrdinalIgnoreCase);

    private bool PrincipalMatches(PolicyCaller caller)
    {
        if (Principal == "*")
        {
            return true;
        }
        if (AccountPattern().IsMatch(Principal))
        {
            return Principal == caller.Account;
        }
        if (IamArnPattern().Match(Principal) is { Success: true } arn)
        {
            // Lamina's identities are accounts (a key belongs to one); any principal of that account matches.
            return arn.Groups["account"].Value == caller.Account;
        }
        return caller.Service is not null && string.Equals(Principal, caller.Service, StringComparison.OrdinalIgnoreCase);
    }

    /// <summary>IAM's ArnLike: <c>*</c> matches any run of characters and <c>?</c> one, within the whole ARN.</summary>
    internal static bool ArnLike(string pattern, string value)
    {
        var regex = "^" + Regex.Escape(pattern).Replace(@"\*", ".*", StringComparison.Ordinal).Replace(@"\?", ".", StringComparison.Ordinal) + @"\z";
        return Regex.IsMatch(value, regex, RegexOptions.CultureInvariant | RegexOptions.Singleline, TimeSpan.FromMilliseconds(100));
    }

    /// <summary>Writes the statement in IAM's shape, as GetPolicy and AddPermission show it.</summary>
    public void Write(Utf8JsonWriter writer)
    {
        writer.WriteStartObject();
        writer.WriteString(nameof(Sid), Sid);
        writer.WriteString("Effect", "Allow");
        if (Principal == "*")
        {
            writer.WriteString(nameof(Principal), "*");
        }
        else
        {
            writer.WriteStartObject(nameof(Principal));
            if (AccountPattern().IsMatch(Principal))
            {
                writer.WriteString("AWS", $"arn:aws:iam::{Principal}:root");
            }
            else if (Principal.StartsWith("arn:", StringComparison.Ordinal))
            {
                writer.WriteString("AWS", Principal);
            }
            else
            {
                writer.WriteString("Service", Principal);
            }
            writer.WriteEndObject();
        }
        writer.WriteString(nameof(Action), Action);
        writer.WriteString(nameof(Resource), Resource);
        if (SourceArn is not null || SourceAccount is not null || PrincipalOrgId is not null || EventSourceToken is not null || FunctionUrlAuthType is not null
            || InvokedViaFunctionUrl is not null)
        {
            writer.WriteStartObject("Condition");
            if (SourceAccount is not null || PrincipalOrgId is not null || EventSourceToken is not null || FunctionUrlAuthType is not null)
            {
                writer.WriteStartObject("StringEquals");
                WriteIfSet(writer, "AWS:SourceAccount", SourceAccount);
                WriteIfSet(writer, "aws:PrincipalOrgID", PrincipalOrgId);
                WriteIfSet(writer, "lambda:EventSourceToken", EventSourceToken);
                WriteIfSet(writer, "lambda:FunctionUrlAuthType", FunctionUrlAuthType);
                writer.WriteEndObject();
            }
            if (InvokedViaFunctionUrl is { } viaUrl)
            {
                writer.WriteStartObject("Bool");
                writer.WriteString("lambda:InvokedViaFunctionUrl", viaUrl ? "true" : "false");
                writer.WriteEndObject();
            }
            if (SourceArn is not null)
            {
                writer.WriteStartObject("ArnLike");
                writer.WriteString("AWS:SourceArn", SourceArn);
                writer.WriteEndObject();
            }
            writer.WriteEndObject();
        }
        writer.WriteEndObject();
    }

    /// <summary>The statement alone, as AddPermission returns it (a JSON string).</summary>
    public string ToJson()
    {
        using var buffer = new MemoryStream();
        using (var writer = new Utf8JsonWriter(buffer))
        {
            Write(writer);
        }
        return System.Text.Encoding.UTF8.GetString(buffer.GetBuffer(), 0, (int)buffer.Length);
    }

    private static void WriteIfSet(Utf8JsonWriter writer, string name, string? value)
    {
        if (value is not null)
        {
            writer.WriteString(name, value);
        }
    }
}
