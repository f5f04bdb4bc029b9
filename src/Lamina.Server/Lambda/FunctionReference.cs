using System.Text.RegularExpressions;
using Lamina.Server.Hosting;
using Lamina.Server.Protocols;

namespace Lamina.Server.Lambda;

/// <summary>
/// A function as a caller names it: a bare name, <c>name:qualifier</c>, a partial ARN
/// (<c>123456789012:function:name</c>) or a full ARN, plus an optional <c>?Qualifier</c> (LAMBDA.md §4).
/// </summary>
internal readonly partial record struct FunctionReference(string Name, string? Qualifier)
{
    /// <summary>Longest bare name Lambda allows.</summary>
    public const int MaxNameLength = 64;

    // The service model's FunctionName pattern with groups named; full match.
    [GeneratedRegex(@"^(?:arn:(?<partition>aws[a-zA-Z-]*)?:lambda:)?(?:(?<region>[a-z]{2}(?:(?:-gov)|(?:-iso(?:[a-z]?)))?-[a-z]+-\d{1}):)?(?:(?<account>\d{12}):)?(?:function:)?(?<name>[a-zA-Z0-9-_]+)(?::(?<qualifier>\$LATEST|[a-zA-Z0-9-_]+))?\z", RegexOptions.CultureInvariant)]
    private static partial Regex FunctionNamePattern();

    [GeneratedRegex(@"^(?:\$LATEST|[a-zA-Z0-9-_]+)\z", RegexOptions.CultureInvariant)]
    private static partial Regex QualifierPattern();

    // The pattern's name group: a string of only these matches as a bare name, whole.
    private static readonly System.Buffers.SearchValues<char> NameCharacters =
        System.Buffers.SearchValues.Create("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_");

    public const string NamePatternText = @"(arn:(aws[a-zA-Z-]*)?:lambda:)?([a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\d{1}:)?(\d{12}:)?(function:)?([a-zA-Z0-9-_]+)(:(\$LATEST|[a-zA-Z0-9-_]+))?";

    /// <summary>
    /// Parses <paramref name="raw"/> (already URL-decoded) and merges <paramref name="qualifier"/> from the query.
    /// Returns an AWS-shaped error for a malformed name, another account or region, or conflicting qualifiers.
    /// </summary>
    public static bool TryParse(string? raw, string? qualifier, LaminaOptions options, out FunctionReference reference, out AwsError? error) =>
        TryParse(raw, qualifier, options, options.AccountId, out reference, out error);

    /// <summary>
    /// As <see cref="TryParse(string?, string?, LaminaOptions, out FunctionReference, out AwsError?)"/> for a caller of
    /// <paramref name="account"/>: a bare name is that account's function, and an ARN of another account is not here
    /// — unless <paramref name="crossAccount"/> (Invoke, where a resource policy may let the caller in). The
    /// reference's <see cref="Name"/> is the registry key (<see cref="LaminaOptions.FunctionKey"/>).
    /// </summary>
    public static bool TryParse(string? raw, string? qualifier, LaminaOptions options, string account, out FunctionReference reference, out AwsError? error,
        bool crossAccount = false)
    {
        reference = default;
        if (string.IsNullOrEmpty(raw) || raw.Length > 140)
        {
            error = AwsError.Validation($"1 validation error detected: Value '{raw}' at 'functionName' failed to satisfy constraint: Member must have length less than or equal to 140");
            return false;
        }

        // A bare name (what most calls use) is only name characters: no regex, no match objects (issue #19).
        if (raw.Length <= MaxNameLength && !raw.AsSpan().ContainsAnyExcept(NameCharacters) && string.IsNullOrEmpty(qualifier))
        {
            reference = new FunctionReference(options.FunctionKey(account, raw), null);
            error = null;
            return true;
        }

        var match = FunctionNamePattern().Match(raw);
        if (!match.Success)
        {
            error = AwsError.Validation($"1 validation error detected: Value '{raw}' at 'functionName' failed to satisfy constraint: Member must satisfy regular expression pattern: {NamePatternText}");
            return false;
        }

        var name = match.Groups["name"].Value;
        if (name.Length > MaxNameLength)
        {
            error = AwsError.InvalidParameter($"Function name must be {MaxNameLength} characters or less: {name}");
            return false;
        }

        var region = match.Groups["region"];
        var partition = match.Groups["partition"];
        var named = match.Groups["account"];
        if ((named.Success && named.Value != account && !crossAccount) || (region.Success && region.Value != options.Region)
            || (partition.Success && partition.Value != "aws"))
        {
            // Another account's, region's or partition's function is simply not here.
            error = AwsError.FunctionNotFound(raw);
            return false;
        }

        var derived = match.Groups["qualifier"].Success ? match.Groups["qualifier"].Value : null;
        if (!string.IsNullOrEmpty(qualifier))
        {
            if (qualifier.Length > 128 || !QualifierPattern().IsMatch(qualifier))
            {
                error = AwsError.Validation($"1 validation error detected: Value '{qualifier}' at 'qualifier' failed to satisfy constraint: Member must satisfy regular expression pattern: (|[a-zA-Z0-9$_-]+)");
                return false;
            }
            if (derived is not null && derived != qualifier)
            {
                error = AwsError.InvalidParameter("The derived qualifier from the function name does not match the specified qualifier.");
                return false;
            }
            derived = qualifier;
        }

        reference = new FunctionReference(options.FunctionKey(named.Success ? named.Value : account, name), derived);
        error = null;
        return true;
    }

    /// <summary>
    /// The function a path names, for operations about the whole function (versions, aliases, concurrency): a
    /// qualifier in the name is ignored. Returns the AWS error for a malformed name.
    /// </summary>
    public static AwsError? ParseFunctionName(string raw, LaminaOptions options, string account, out string? name)
    {
        name = null;
        if (!TryParse(raw, null, options, account, out var reference, out var error))
        {
            return error;
        }
        name = reference.Name;
        return null;
    }
}
