using System.Globalization;
using System.Text.RegularExpressions;
using Lamina.Server.Hosting;
using Lamina.Server.Protocols;

namespace Lamina.Server.Lambda;

/// <summary>
/// Alias rules, as Lambda checks them: the name (not all digits, not <c>$LATEST</c>), the target version (must
/// exist), and weighted routing (one additional published version, weight 0.0–1.0, not the primary version, never
/// with <c>$LATEST</c>).
/// </summary>
internal static partial class FunctionValidation
{
    public const int MaxAliasNameLength = 128;

    /// <summary>Lambda allows one additional version per alias.</summary>
    public const int MaxAdditionalVersions = 1;

    private const string AliasNamePatternText = "(?!^[0-9]+$)([a-zA-Z0-9-_]+)";
    private const string VersionPatternText = @"(\$LATEST|[0-9]+)";

    [GeneratedRegex(@"^(?!^[0-9]+\z)[a-zA-Z0-9-_]+\z", RegexOptions.CultureInvariant)]
    private static partial Regex AliasNamePattern();

    [GeneratedRegex(@"^(?:\$LATEST|[0-9]+)\z", RegexOptions.CultureInvariant)]
    private static partial Regex VersionPattern();

    [GeneratedRegex(@"^[0-9]+\z", RegexOptions.CultureInvariant)]
    private static partial Regex AdditionalVersionPattern();

    public static AwsError? ValidateAliasName(string? name)
    {
        if (name is null)
        {
            return NotNull("name");
        }
        if (name.Length is 0 or > MaxAliasNameLength)
        {
            return AwsError.Validation(name.Length == 0
                ? "1 validation error detected: Value '' at 'name' failed to satisfy constraint: Member must have length greater than or equal to 1"
                : $"1 validation error detected: Value '{name}' at 'name' failed to satisfy constraint: Member must have length less than or equal to {MaxAliasNameLength}");
        }
        return AliasNamePattern().IsMatch(name)
            ? null
            : AwsError.Validation($"1 validation error detected: Value '{name}' at 'name' failed to satisfy constraint: Member must satisfy regular expression pattern: {AliasNamePatternText}");
    }

    /// <summary>A version as CreateAlias, UpdateAlias and ListAliases take it: <c>$LATEST</c> or a number.</summary>
    public static AwsError? ValidateVersionValue(string? version, string member = "functionVersion")
    {
        if (version is null)
        {
            return NotNull(member);
        }
        if (version.Length is 0 or > 1024 || !VersionPattern().IsMatch(version))
        {
            return AwsError.Validation($"1 validation error detected: Value '{version}' at '{member}' failed to satisfy constraint: Member must satisfy regular expression pattern: {VersionPatternText}");
        }
        return null;
    }

    /// <summary>404 unless <paramref name="version"/> (<c>$LATEST</c> or a number) exists in <paramref name="entry"/>.</summary>
    public static AwsError? ValidateVersionExists(FunctionEntry entry, string version, LaminaOptions options) =>
        entry.ResolveVersion(version) is null ? AwsError.FunctionNotFound($"{options.FunctionArn(entry.Name)}:{version}") : null;

    /// <summary>
    /// Checks an alias's routing against its primary version <paramref name="primary"/> and returns the additional
    /// version and its weight (null and 0 when <paramref name="weights"/> is null or empty: no routing).
    /// </summary>
    public static AwsError? ValidateRouting(FunctionEntry entry, string primary, IReadOnlyDictionary<string, double>? weights,
        LaminaOptions options, out string? additionalVersion, out double weight)
    {
        additionalVersion = null;
        weight = 0;
        if (weights is null || weights.Count == 0)
        {
            return null;
        }
        if (weights.Count > MaxAdditionalVersions)
        {
            return AwsError.InvalidParameter($"Number of items in AdditionalVersionWeights cannot be greater than {MaxAdditionalVersions}");
        }
        var (key, value) = weights.First();
        var shown = $"{{{key}={value.ToString(CultureInfo.InvariantCulture)}}}";
        if (key.Length is 0 or > 1024 || !AdditionalVersionPattern().IsMatch(key))
        {
            return AwsError.Validation(
                $"1 validation error detected: Value '{shown}' at 'routingConfig.additionalVersionWeights' failed to satisfy constraint: Map keys must satisfy constraint: [Member must have length less than or equal to 1024, Member must have length greater than or equal to 1, Member must satisfy regular expression pattern: [0-9]+, Member must not be null]");
        }
        if (double.IsNaN(value) || value is < 0.0 or > 1.0)
        {
            return AwsError.Validation(
                $"1 validation error detected: Value '{shown}' at 'routingConfig.additionalVersionWeights' failed to satisfy constraint: Map value must satisfy constraint: [Member must have value less than or equal to 1.0, Member must have value greater than or equal to 0.0, Member must not be null]");
        }
        if (key == primary)
        {
            return AwsError.InvalidParameter($"Invalid function version {primary}. Function version {primary} is already included in routing configuration.");
        }
        if (primary == FunctionEntry.Latest)
        {
            return AwsError.InvalidParameter("$LATEST is not supported for an alias pointing to more than 1 version");
        }
        if (ValidateVersionExists(entry, key, options) is { } missing)
        {
            return missing;
        }
        additionalVersion = key;
        weight = value;
        return null;
    }
}
