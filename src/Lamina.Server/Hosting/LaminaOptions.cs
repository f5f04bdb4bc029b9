using System.ComponentModel.DataAnnotations;

namespace Lamina.Server.Hosting;

/// <summary>Server-wide settings. Bound from the command line (<c>./lamina serve</c>) and the <c>Lamina</c> configuration section.</summary>
public sealed class LaminaOptions
{
    /// <summary>Region used in every ARN. Default <c>us-east-1</c>, as the AWS tools assume.</summary>
    [Required]
    public string Region { get; set; } = "us-east-1";

    /// <summary>Account id used in every ARN. Default <c>000000000000</c>, the local-tools convention.</summary>
    [RegularExpression(@"^\d{12}$")]
    public string AccountId { get; set; } = "000000000000";

    /// <summary>Where state (SQLite), code blobs and sandbox scratch space live. Default <c>~/.lamina</c>.</summary>
    [Required]
    public string DataDirectory { get; set; } = Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".lamina");

    /// <summary>Address to listen on. Default loopback: without credentials nobody else may reach the API.</summary>
    [Required]
    public string Host { get; set; } = "127.0.0.1";

    /// <summary>Port to listen on; 0 picks a free one (printed at start). Default 9000.</summary>
    [Range(0, 65535)]
    public int Port { get; set; } = 9000;

    /// <summary>
    /// Directory holding Lamina's runtime bootstraps, mounted at <c>/var/runtime</c>. Default: <c>lambda-runtimes/</c> next to the server binary.
    /// </summary>
    public string RuntimesDirectory { get; set; } = Path.Combine(AppContext.BaseDirectory, "lambda-runtimes");

    /// <summary>
    /// How long an idle environment stays warm before it is shut down (<c>--idle-timeout SECONDS</c>). Default 10
    /// minutes (Lambda keeps idle environments for minutes, not seconds). Provisioned environments are never reaped.
    /// </summary>
    public TimeSpan IdleEnvironmentLifetime { get; set; } = TimeSpan.FromMinutes(10);

    /// <summary>
    /// The node's memory budget in MB (<c>--memory-budget</c>): the most the MemorySize of all live environments may add
    /// up to. A cold start beyond it evicts idle environments, least recently used first, or is throttled. Default:
    /// the machine's physical memory.
    /// </summary>
    [Range(128, int.MaxValue)]
    public int MemoryBudgetMb { get; set; } = PhysicalMemoryMb();

    /// <summary>MemTotal from /proc/meminfo, in MB (a large default if it cannot be read).</summary>
    public static int PhysicalMemoryMb()
    {
        try
        {
            foreach (var line in File.ReadLines("/proc/meminfo"))
            {
                // "MemTotal:       16311672 kB"
                if (line.StartsWith("MemTotal:", StringComparison.Ordinal)
                    && long.TryParse(line.AsSpan(9).Trim().TrimEnd("kB").Trim(), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var kb))
                {
                    return (int)Math.Min(int.MaxValue, kb / 1024);
                }
            }
        }
        catch (IOException)
        {
        }
        return 1024 * 1024;
    }

    /// <summary>
    /// Whether functions get outbound network (through pasta, ~80 ms per cold start). Default on, as on Lambda;
    /// a function turns it off with <c>LAMINA_NETWORK=none</c>, an operator for all with <c>--function-network off</c>.
    /// </summary>
    public bool FunctionNetwork { get; set; } = true;

    /// <summary>
    /// Wait before the first retry of an asynchronous invocation that failed (<c>--async-retry-delay SECONDS</c>);
    /// later retries wait twice as long each. Default 60 s, Lambda's "about a minute, then two".
    /// </summary>
    public TimeSpan AsyncRetryDelay { get; set; } = TimeSpan.FromSeconds(60);

    /// <summary>
    /// How long code and layer packages nothing uses any more (replaced code, deleted functions and layer versions)
    /// stay on disk before they are deleted (<c>--unused-code-retention</c>, seconds). Longer than a function's
    /// timeout: an environment of a configuration just replaced may still be running from its files.
    /// </summary>
    public TimeSpan UnusedCodeRetention { get; set; } = TimeSpan.FromHours(1);

    /// <summary>
    /// Most disk the function logs may use, in MB (<c>--log-max-mb</c>); past it the oldest events are deleted.
    /// Default 1024. Each log group's retention (PutRetentionPolicy) applies as well.
    /// </summary>
    [Range(1, int.MaxValue)]
    public int LogMaxMb { get; set; } = 1024;

    /// <summary>
    /// An OpenTelemetry collector's OTLP/HTTP base address (<c>--otlp-endpoint</c>, e.g. <c>http://127.0.0.1:4318</c>);
    /// spans go to its <c>/v1/traces</c>. Null: <c>OTEL_EXPORTER_OTLP_ENDPOINT</c> if set, else no tracing.
    /// </summary>
    public string? OtlpEndpoint { get; set; }

    /// <summary>
    /// Serve <c>/metrics</c> without a signature even once access keys exist (<c>--public-metrics</c>), for scrapers
    /// that cannot sign. Off by default: like every other route it then needs a signed request.
    /// </summary>
    public bool PublicMetrics { get; set; }

    /// <summary>
    /// The cluster's shared store (<c>--database postgresql://user:pass@host:port/db</c> or <c>LAMINA_DATABASE</c>,
    /// issue #25): Lambda's control plane and the asynchronous queue live there, shared by every node. Null: the
    /// single-machine default, SQLite files under <see cref="DataDirectory"/>.
    /// </summary>
    public string? Database { get; set; }

    /// <summary>
    /// Where code and layer zips and their extracted trees live (<c>--shared-dir</c>): a directory every node of a
    /// cluster mounts at the same path. Null: <see cref="DataDirectory"/>.
    /// </summary>
    public string? SharedDirectory { get; set; }

    /// <summary>
    /// This node's name in the cluster (<c>--node-id</c>): the holder of its leases and claimed events. Stable across
    /// restarts so that a node coming back releases what it held before. Default: host name and data directory.
    /// </summary>
    public string? NodeId { get; set; }

    /// <summary>
    /// Where the other cluster nodes reach this one (<c>--advertise-url</c>), for the requests they forward to it
    /// (durable executions run on one node). Default: <c>http://&lt;host&gt;:&lt;port&gt;</c> as <c>serve</c> listens,
    /// the host's name when it listens on a wildcard address.
    /// </summary>
    public string? AdvertiseUrl { get; set; }

    /// <summary>The node id in use: <see cref="NodeId"/>, else the host name and data directory.</summary>
    public string EffectiveNodeId => NodeId ?? $"{Environment.MachineName}:{DataDirectory}";

    /// <summary>Bound on the Init phase (extensions, runtime, handler). Lambda's value is 10 s.</summary>
    public TimeSpan InitTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// Most invocations that may run at once across all functions (<c>--account-concurrency</c>). Default 1000,
    /// Lambda's default account quota; set it to what the machine can hold (each running invocation is a process
    /// with its function's memory). Functions with reserved concurrency take theirs out of it.
    /// </summary>
    [Range(1, 1_000_000)]
    public int AccountConcurrency { get; set; } = DefaultAccountConcurrency;

    public const int DefaultAccountConcurrency = 1000;

    /// <summary>
    /// Most environments starting at once on this node, sandbox and Init (<c>--max-cold-starts</c>). Starting processes
    /// is CPU work: a burst that started one environment per event at once (64 per async lease) left a 2-core node
    /// answering nothing for seconds, its cluster heartbeat lapsing. An invocation beyond it waits for room, or takes an
    /// environment of its function that goes idle meanwhile. Default: 4 per CPU.
    /// </summary>
    [Range(1, 10_000)]
    public int MaxColdStarts { get; set; } = 4 * Environment.ProcessorCount;

    /// <summary>
    /// What reservations must leave to the functions without one: Lambda's 100, or the whole account limit when it is
    /// below 100 (then no function can reserve any).
    /// </summary>
    public int MinimumUnreservedConcurrency => Math.Min(100, AccountConcurrency);

    /// <summary>
    /// The ARN of a function by its registry key (<see cref="FunctionKey"/>): the server's account for a bare name,
    /// the named account for <c>account:name</c>.
    /// </summary>
    public string FunctionArn(string key)
    {
        var (account, name) = SplitFunctionKey(key);
        return $"arn:aws:lambda:{Region}:{account}:function:{name}";
    }

    /// <summary>
    /// How the registry names a function of <paramref name="account"/>: its bare name in the server's own account (so
    /// a single-account server's state is what it always was), <c>account:name</c> in any other. A name never contains
    /// <c>:</c>, so keys of different accounts never collide. Accounts are tenants: every lookup goes through a key.
    /// </summary>
    public string FunctionKey(string account, string name) => account == AccountId ? name : $"{account}:{name}";

    public (string Account, string Name) SplitFunctionKey(string key)
    {
        var colon = key.IndexOf(':', StringComparison.Ordinal);
        return colon < 0 ? (AccountId, key) : (key[..colon], key[(colon + 1)..]);
    }
}
