namespace Lamina.Server.Sandbox;

/// <summary>What one sandbox is made of. Paths are host paths; the sandbox sees them at the Lambda locations.</summary>
internal sealed record SandboxSpec
{
    /// <summary>Unique id (32 hex chars); names the cgroup.</summary>
    public required string Id { get; init; }

    /// <summary>Extracted function code, mounted read-only at <c>/var/task</c>.</summary>
    public required string CodeDirectory { get; init; }

    /// <summary>
    /// The function's layers merged in order (later wins), mounted read-only at <c>/opt</c>; null for an empty
    /// <c>/opt</c>. Extensions are the executables in its <c>extensions/</c> folder.
    /// </summary>
    public string? OptDirectory { get; init; }

    /// <summary>Lamina's runtime bootstraps, mounted read-only at <c>/var/runtime</c>.</summary>
    public required string RuntimesDirectory { get; init; }

    /// <summary>
    /// For the Node.js runtimes, the major version (<c>20</c>): ES modules then find the layers' and the runtime's
    /// packages at <c>/var/node_modules</c> (<see cref="NodePackageLinks"/>). Null for other runtimes.
    /// </summary>
    public string? NodeMajorVersion { get; init; }

    /// <summary>Program and arguments as seen inside the sandbox.</summary>
    public required IReadOnlyList<string> Command { get; init; }

    /// <summary>The complete environment of the runtime process (nothing is inherited from the server).</summary>
    public required IReadOnlyDictionary<string, string> Environment { get; init; }

    public required int MemoryMb { get; init; }

    /// <summary>
    /// Outbound network through a user-mode stack (pasta): the sandbox gets an interface and a default route, but
    /// never the host's loopback. Off: the sandbox has only its loopback and its Runtime API.
    /// </summary>
    public bool OutboundNetwork { get; init; }

    /// <summary>Size of the private <c>/tmp</c> (EphemeralStorage).</summary>
    public required int TmpSizeMb { get; init; }
}
