using System.Globalization;
using System.Security.Cryptography;
using System.Text.Json.Nodes;

namespace Lamina.Server.CloudFormation;

/// <summary>What a provider is asked to create, update or delete: the resource's resolved properties and its current state.</summary>
internal sealed record ProvisionRequest
{
    public required string LogicalId { get; init; }
    public required string StackName { get; init; }
    public required string StackId { get; init; }
    public required string AccountId { get; init; }
    public required string Region { get; init; }

    /// <summary>The properties to apply (create, update) or last applied (delete), every intrinsic function resolved.</summary>
    public required JsonObject Properties { get; init; }

    /// <summary>The physical resource being updated or deleted; null on create.</summary>
    public string? PhysicalId { get; init; }

    /// <summary>On update: the properties the resource has now, and its attributes.</summary>
    public JsonObject? PreviousProperties { get; init; }
    public JsonObject? PreviousAttributes { get; init; }

    /// <summary>The random part of names CloudFormation generates for this resource (stable for one creation).</summary>
    public required string NameSuffix { get; init; }

    public required LoopbackClient Client { get; init; }

    /// <summary>
    /// A physical name as CloudFormation makes one when the template names none: <c>stack-LogicalId-SUFFIX</c>, the
    /// stack and logical parts shortened to fit <paramref name="maxLength"/>.
    /// </summary>
    public string GeneratedName(int maxLength, bool lowercase = false)
    {
        var suffix = lowercase ? NameSuffix.ToLowerInvariant() : NameSuffix;
        var room = maxLength - suffix.Length - 2;
        var stack = StackName;
        var logical = LogicalId;
        if (stack.Length + logical.Length > room)
        {
            // Each part keeps as much as fits, the stack name at least half of the room.
            stack = stack[..Math.Min(stack.Length, Math.Max(room - logical.Length, room / 2))];
            logical = logical[..Math.Min(logical.Length, room - stack.Length)];
        }
        var name = $"{stack}-{logical}-{suffix}";
        return lowercase ? name.ToLowerInvariant() : name;
    }

    public static string NewSuffix()
    {
        const string Alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
        return RandomNumberGenerator.GetString(Alphabet, 12);
    }

    // ---- property readers: templates write numbers and booleans as strings as often as not ------------------------------

    public string? String(string name) => Properties[name] is { } node ? Intrinsics.Stringify(node) : null;

    public string RequiredString(string name) => String(name) is { Length: > 0 } value
        ? value
        : throw new ServiceException("cloudformation", 400, "InvalidRequest", $"Property {name} cannot be empty.");

    public int? Int(string name) => Properties[name] is { } node
        ? int.TryParse(Intrinsics.Stringify(node), NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var value)
            ? value
            : throw new ServiceException("cloudformation", 400, "InvalidRequest", $"#/{name}: expected type: Integer, found: {Intrinsics.Stringify(node)}")
        : null;

    public bool? Bool(string name) => Properties[name] is { } node ? Intrinsics.Stringify(node).Equals("true", StringComparison.OrdinalIgnoreCase) : null;
}

/// <summary>What a create or update produced: the physical id (what <c>Ref</c> answers) and the <c>Fn::GetAtt</c> attributes.</summary>
internal sealed record ProvisionResult(string PhysicalId, JsonObject Attributes);

/// <summary>
/// Creates, updates and deletes one resource type by calling the service that owns it (through
/// <see cref="LoopbackClient"/>). Several implementations, one per resource type.
/// </summary>
internal abstract class ResourceProvider
{
    public abstract string Type { get; }

    /// <summary>Properties whose change needs a new physical resource (CloudFormation's "Replacement: True").</summary>
    public virtual IReadOnlySet<string> CreateOnlyProperties { get; } = new HashSet<string>();

    /// <summary>
    /// The property that names the physical resource, if the template may set it: a resource named in the template
    /// cannot be replaced under the same name (CloudFormation refuses such an update too).
    /// </summary>
    public virtual string? NameProperty => null;

    /// <summary>False when the type has no update at all: any change replaces it.</summary>
    public virtual bool Updatable => true;

    /// <summary>The attributes <c>Fn::GetAtt</c> may ask for.</summary>
    public virtual IReadOnlySet<string> AttributeNames { get; } = new HashSet<string>();

    /// <summary>
    /// The physical id a create will have, when it is known before the call (a generated name): recorded first, so a
    /// crash in the middle of the call leaves nothing the stack does not know about.
    /// </summary>
    public virtual string? PlannedPhysicalId(ProvisionRequest request) => null;

    public abstract Task<ProvisionResult> CreateAsync(ProvisionRequest request, CancellationToken cancellationToken);

    public virtual Task<ProvisionResult> UpdateAsync(ProvisionRequest request, CancellationToken cancellationToken) =>
        Task.FromResult(new ProvisionResult(request.PhysicalId!, request.PreviousAttributes ?? []));

    /// <summary>Deletes the resource; one that is already gone counts as deleted.</summary>
    public abstract Task DeleteAsync(ProvisionRequest request, CancellationToken cancellationToken);

    /// <summary>Whether changing <paramref name="before"/> into <paramref name="after"/> needs a new physical resource.</summary>
    public bool RequiresReplacement(JsonObject before, JsonObject after) =>
        !Updatable || CreateOnlyProperties.Any(name => !JsonNode.DeepEquals(before[name], after[name]));

    protected static async Task IgnoreNotFoundAsync(Func<Task> delete)
    {
        try
        {
            await delete();
        }
        catch (ServiceException e) when (e.NotFound)
        {
        }
    }

    protected static HashSet<string> Set(params string[] names) => new(names, StringComparer.Ordinal);
}
