using System.Text.RegularExpressions;
using Lamina.Server.Hosting;
using Lamina.Server.Protocols;

namespace Lamina.Server.Lambda;

/// <summary>Layer rules, as Lambda checks them: a function's <c>Layers</c>, the combined unzipped size, PublishLayerVersion's members.</summary>
internal static partial class FunctionValidation
{
    /// <summary>Layers a function may list.</summary>
    public const int MaxLayers = 5;

    public const int MaxLicenseInfoLength = 512;
    public const int MaxCompatibleRuntimes = 15;
    public const int MaxCompatibleArchitectures = 2;

    /// <summary>The model's Runtime enum: any of them may be declared compatible with a layer, retired ones included.</summary>
    public static readonly IReadOnlyList<string> LayerRuntimes =
    [
        "nodejs", "nodejs4.3", "nodejs6.10", "nodejs8.10", "nodejs10.x", "nodejs12.x", "nodejs14.x", "nodejs16.x",
        "java8", "java8.al2", "java11", "python2.7", "python3.6", "python3.7", "python3.8", "python3.9",
        "dotnetcore1.0", "dotnetcore2.0", "dotnetcore2.1", "dotnetcore3.1", "dotnet6", "dotnet8", "nodejs4.3-edge",
        "go1.x", "ruby2.5", "ruby2.7", "provided", "provided.al2", "nodejs18.x", "python3.10", "java17", "ruby3.2",
        "ruby3.3", "ruby3.4", "python3.11", "nodejs20.x", "provided.al2023", "python3.12", "java21", "python3.13",
        "nodejs22.x", "nodejs24.x", "python3.14", "java25", "dotnet10", "ruby4.0",
    ];

    private const string LayerVersionArnPatternText =
        @"(arn:[a-zA-Z0-9-]+:lambda:[a-z]{2}((-gov)|(-iso(b?)))?-[a-z]+-\d{1}:\d{12}:layer:[a-zA-Z0-9-_]+:[0-9]+)|(arn:[a-zA-Z0-9-]+:lambda:::awslayer:[a-zA-Z0-9-_]+)";

    private const string LayerNamePatternText = @"(arn:[a-zA-Z0-9-]+:lambda:[a-zA-Z0-9-]+:\d{12}:layer:[a-zA-Z0-9-_]+)|[a-zA-Z0-9-_]+";

    [GeneratedRegex(@"^arn:[a-zA-Z0-9-]+:lambda:(?<region>[a-zA-Z0-9-]+):(?<account>\d{12}):layer:(?<name>[a-zA-Z0-9-_]+):(?<version>[0-9]+)\z", RegexOptions.CultureInvariant)]
    private static partial Regex LayerVersionArnPattern();

    [GeneratedRegex(@"^(?:arn:[a-zA-Z0-9-]+:lambda:(?<region>[a-zA-Z0-9-]+):(?<account>\d{12}):layer:)?(?<name>[a-zA-Z0-9-_]+)\z", RegexOptions.CultureInvariant)]
    private static partial Regex LayerNamePattern();

    /// <summary>
    /// Checks a function's <c>Layers</c> (count, ARN form, region, one version per layer) and resolves each to the
    /// layer version it names, in order. A layer version that does not exist (or another account's) is refused.
    /// </summary>
    public static AwsError? ResolveLayers(List<string> arns, LayerRegistry layers, LaminaOptions options, out List<FunctionLayer> resolved)
    {
        resolved = [];
        if (arns.Count > MaxLayers)
        {
            return AwsError.InvalidParameter($"Cannot reference more than {MaxLayers} layers.");
        }
        var seen = new Dictionary<string, string>(StringComparer.Ordinal); // layer ARN -> the version ARN that named it
        foreach (var arn in arns)
        {
            var match = arn is { Length: > 0 and <= 140 } ? LayerVersionArnPattern().Match(arn) : Match.Empty;
            if (!match.Success)
            {
                return AwsError.Validation(
                    $"1 validation error detected: Value '[{string.Join(", ", arns)}]' at 'layers' failed to satisfy constraint: Member must satisfy constraint: [Member must have length less than or equal to 140, Member must have length greater than or equal to 1, Member must satisfy regular expression pattern: {LayerVersionArnPatternText}, Member must not be null]");
            }
            if (match.Groups["region"].Value != options.Region)
            {
                return AwsError.InvalidParameter($"Layers are not in the same region as the function. Layers are expected to be in region {options.Region}.");
            }
            var layerArn = arn[..arn.LastIndexOf(':')];
            if (seen.TryGetValue(layerArn, out var earlier))
            {
                return AwsError.InvalidParameter(
                    $"Two different versions of the same layer are not allowed to be referenced in the same function. {earlier} and {arn} are versions of the same layer.");
            }
            seen[layerArn] = arn;
            if (match.Groups["account"].Value != options.AccountId ||
                !long.TryParse(match.Groups["version"].ValueSpan, out var number) ||
                !layers.TryGet(match.Groups["name"].Value, number, out var version))
            {
                return AwsError.InvalidParameter($"Layer version {arn} does not exist.");
            }
            resolved.Add(new FunctionLayer(options.LayerVersionArn(version.LayerName, version.Version), version.CodeSize, version.CodeSha256));
        }
        return null;
    }

    /// <summary>Lambda's 250 MB limit on the unzipped function code and its layers together.</summary>
    public static AwsError? ValidateUnzippedTotal(string codeHashHex, IReadOnlyList<FunctionLayer> layers, CodeStore codeStore)
    {
        if (layers.Count == 0)
        {
            return null; // the code alone was checked when it was extracted
        }
        var total = codeStore.GetUnzippedSize(codeHashHex) + layers.Sum(l => codeStore.GetUnzippedSize(l.CodeHashHex));
        return total > codeStore.UnzippedLimit
            ? AwsError.InvalidParameter($"Function code combined with layers exceeds the maximum allowed size of {codeStore.UnzippedLimit} bytes. The actual size is {total} bytes.")
            : null;
    }

    /// <summary>
    /// A layer name from a path: a bare name or the layer's ARN. Another account's or region's layer is not here
    /// (<paramref name="name"/> is then null and no error is returned: the caller answers "not found").
    /// </summary>
    public static AwsError? ParseLayerName(string raw, LaminaOptions options, out string? name)
    {
        name = null;
        var match = raw.Length is > 0 and <= 140 ? LayerNamePattern().Match(raw) : Match.Empty;
        if (!match.Success)
        {
            return AwsError.Validation(
                $"1 validation error detected: Value '{raw}' at 'layerName' failed to satisfy constraint: Member must satisfy regular expression pattern: {LayerNamePatternText}");
        }
        if (match.Groups["account"].Success && (match.Groups["account"].Value != options.AccountId || match.Groups["region"].Value != options.Region))
        {
            return null;
        }
        name = match.Groups["name"].Value;
        return null;
    }

    /// <summary>A layer version ARN (GetLayerVersionByArn): this account's and region's layer name and version, or an error.</summary>
    public static AwsError? ParseLayerVersionArn(string? arn, LaminaOptions options, out string? name, out long version)
    {
        name = null;
        version = 0;
        if (arn is null)
        {
            return AwsError.Validation("1 validation error detected: Value null at 'arn' failed to satisfy constraint: Member must not be null");
        }
        var match = arn.Length is > 0 and <= 140 ? LayerVersionArnPattern().Match(arn) : Match.Empty;
        if (!match.Success || !long.TryParse(match.Groups["version"].ValueSpan, out version))
        {
            return AwsError.Validation(
                $"1 validation error detected: Value '{arn}' at 'arn' failed to satisfy constraint: Member must satisfy regular expression pattern: arn:(aws[a-zA-Z-]*)?:lambda:[a-z]{{2}}((-gov)|(-iso(b?)))?-[a-z]+-\\d{{1}}:\\d{{12}}:layer:[a-zA-Z0-9-_]+:[0-9]+");
        }
        if (match.Groups["account"].Value == options.AccountId && match.Groups["region"].Value == options.Region)
        {
            name = match.Groups["name"].Value;
        }
        return null;
    }

    /// <summary>PublishLayerVersion's members other than the zip itself.</summary>
    public static AwsError? ValidateLayerPublish(PublishLayerVersionRequest request)
    {
        if (request.Content is null)
        {
            return NotNull("content");
        }
        var content = request.Content;
        if (CodeSourceError(content.ZipFile is not null, content.S3Bucket, content.S3Key, content.S3ObjectVersion, "the layer content") is { } sourceError)
        {
            return sourceError;
        }
        if (request.Description is { Length: > MaxDescriptionLength })
        {
            return MaxLength(request.Description, "description", MaxDescriptionLength);
        }
        if (request.LicenseInfo is { Length: > MaxLicenseInfoLength })
        {
            return MaxLength(request.LicenseInfo, "licenseInfo", MaxLicenseInfoLength);
        }
        var errors = new List<string>();
        if (request.CompatibleRuntimes is { } runtimes)
        {
            if (runtimes.Count > MaxCompatibleRuntimes)
            {
                errors.Add($"Value '[{string.Join(", ", runtimes)}]' at 'compatibleRuntimes' failed to satisfy constraint: Member must have length less than or equal to {MaxCompatibleRuntimes}");
            }
            else if (runtimes.Any(r => !LayerRuntimes.Contains(r, StringComparer.Ordinal)))
            {
                errors.Add($"Value '[{string.Join(", ", runtimes)}]' at 'compatibleRuntimes' failed to satisfy constraint: Member must satisfy constraint: [Member must satisfy enum value set: [{string.Join(", ", LayerRuntimes)}]]");
            }
        }
        if (request.CompatibleArchitectures is { } architectures)
        {
            if (architectures.Count > MaxCompatibleArchitectures)
            {
                errors.Add($"Value '[{string.Join(", ", architectures)}]' at 'compatibleArchitectures' failed to satisfy constraint: Member must have length less than or equal to {MaxCompatibleArchitectures}");
            }
            else if (architectures.Any(a => a is not ("x86_64" or "arm64")))
            {
                errors.Add($"Value '[{string.Join(", ", architectures)}]' at 'compatibleArchitectures' failed to satisfy constraint: Member must satisfy constraint: [Member must satisfy enum value set: [x86_64, arm64]]");
            }
        }
        return errors.Count == 0
            ? null
            : AwsError.Validation($"{errors.Count} validation error{(errors.Count > 1 ? "s" : "")} detected: {string.Join("; ", errors)}");
    }

    /// <summary>ListLayers' and ListLayerVersions' filters.</summary>
    public static AwsError? ValidateLayerFilters(string? runtime, string? architecture)
    {
        var errors = new List<string>();
        if (runtime is not null && !LayerRuntimes.Contains(runtime, StringComparer.Ordinal))
        {
            errors.Add($"Value '{runtime}' at 'compatibleRuntime' failed to satisfy constraint: Member must satisfy enum value set: [{string.Join(", ", LayerRuntimes)}]");
        }
        if (architecture is not null && architecture is not ("x86_64" or "arm64"))
        {
            errors.Add($"Value '{architecture}' at 'compatibleArchitecture' failed to satisfy constraint: Member must satisfy enum value set: [x86_64, arm64]");
        }
        return errors.Count == 0
            ? null
            : AwsError.Validation($"{errors.Count} validation error{(errors.Count > 1 ? "s" : "")} detected: {string.Join("; ", errors)}");
    }
}
