using System.CommandLine;
using System.CommandLine.Help;
using System.CommandLine.Parsing;
using System.Globalization;

namespace Lamina.Server.Hosting;

/// <summary>
/// The <c>lamina</c> command line (System.CommandLine): <c>serve</c> with its options, <c>--help</c> on every level,
/// <c>--version</c>, the operator commands <c>keys</c>, <c>events</c> and <c>logs</c>, and <c>deploy</c> / <c>delete-stack</c>. Each option checks its own
/// value and says what it must be; a bad command line exits with 2.
/// </summary>
internal static class CommandLine
{
    private const string Description = "Lamina: AWS Lambda's APIs, runtimes and sandboxes on your own machine.";

    /// <summary>The command tree; <paramref name="serve"/> runs the server with the parsed options.</summary>
    public static Command Build(Func<LaminaOptions, CancellationToken, Task<int>> serve)
    {
        var defaults = new LaminaOptions();
        var port = Number("--port", "TCP port to listen on (0 picks a free one)", defaults.Port, 0, 65535, "a number from 0 to 65535");
        var host = new Option<string>("--host") { Description = "Address to listen on", DefaultValueFactory = _ => defaults.Host };
        var data = DataOption("Data directory: state, code, sandboxes");
        var functionNetwork = new Option<string>("--function-network")
        {
            Description = "Outbound network for functions (a function opts out with LAMINA_NETWORK=none)",
            HelpName = "on|off",
            DefaultValueFactory = _ => defaults.FunctionNetwork ? "on" : "off",
            CustomParser = r => Single(r) is "on" or "off" ? Single(r) : Fail<string>(r, $"--function-network must be 'on' or 'off', not '{Single(r)}'"),
        };
        var accountConcurrency = Number("--account-concurrency", "Most invocations running at once, all functions together (Lambda's default)",
            defaults.AccountConcurrency, 1, 1_000_000, "a number from 1 to 1000000");
        var memoryBudget = Number("--memory-budget", "Most MB the live environments' MemorySize may add up to; idle ones are evicted least recently used first (default: the machine's memory)",
            defaults.MemoryBudgetMb, 128, int.MaxValue, "a number of MB, at least 128");
        var maxColdStarts = Number("--max-cold-starts", "Most environments starting at once on this node; an invocation beyond it waits for room, or takes an environment of its function that goes idle meanwhile (default: 4 per CPU)",
            defaults.MaxColdStarts, 1, 10_000, "a number from 1 to 10000");
        var idleTimeout = Number("--idle-timeout", "Seconds an idle environment stays warm before it is stopped",
            (int)defaults.IdleEnvironmentLifetime.TotalSeconds, 1, int.MaxValue, "a number of seconds, at least 1");
        var asyncRetryDelay = new Option<double>("--async-retry-delay")
        {
            Description = "Seconds before an async invocation's first retry; later ones double",
            HelpName = "seconds",
            DefaultValueFactory = _ => defaults.AsyncRetryDelay.TotalSeconds,
            CustomParser = r => double.TryParse(Single(r), NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out var seconds) && seconds is >= 0 and <= 21600
                ? seconds
                : Fail<double>(r, $"--async-retry-delay must be a number of seconds from 0 to 21600, not '{Single(r)}'"),
        };
        var unusedCodeRetention = Number("--unused-code-retention", "Seconds that code and layer packages nothing uses any more stay on disk before they are deleted",
            (int)defaults.UnusedCodeRetention.TotalSeconds, 1, int.MaxValue, "a number of seconds, at least 1");
        var logMaxMb = Number("--log-max-mb", "Most disk the function logs may use; the oldest events go first", defaults.LogMaxMb, 1, int.MaxValue, "a number of MB, at least 1");
        var otlpEndpoint = new Option<string?>("--otlp-endpoint")
        {
            Description = "Send traces to this OpenTelemetry collector (OTLP/HTTP, e.g. http://127.0.0.1:4318)",
            HelpName = "url",
            CustomParser = r => Uri.TryCreate(Single(r), UriKind.Absolute, out var uri) && uri.Scheme is "http" or "https"
                ? Single(r)
                : Fail<string?>(r, $"--otlp-endpoint must be an http(s) URL, not '{Single(r)}'"),
        };
        var database = DatabaseOption("Run as a cluster node on this PostgreSQL database (also $LAMINA_DATABASE); default: SQLite under --data");
        var sharedDir = new Option<string?>("--shared-dir")
        {
            Description = "Directory every node mounts at the same path, for code and layers (default: --data)",
            HelpName = "dir",
            CustomParser = r => Path.GetFullPath(Single(r)),
        };
        var nodeId = new Option<string?>("--node-id") { Description = "This node's name in the cluster (default: host name and data directory)", HelpName = "name" };
        var advertiseUrl = new Option<string?>("--advertise-url")
        {
            Description = "Where the other cluster nodes reach this one (default: http://<host>:<port> as it listens; set it when --host is 0.0.0.0)",
            HelpName = "url",
            CustomParser = r => Uri.TryCreate(Single(r), UriKind.Absolute, out var uri) && uri.Scheme is "http" or "https" && uri.AbsolutePath == "/"
                ? Single(r)
                : Fail<string?>(r, $"--advertise-url must be an http(s) URL without a path, not '{Single(r)}'"),
        };
        var publicMetrics = new Option<bool>("--public-metrics") { Description = "Serve /metrics without a signature even once access keys exist (for Prometheus scrapers)" };

        var serveCommand = new Command("serve", "Start the Lamina server (Lambda API, invoke, Runtime API, SQS, SNS, Logs, EventBridge)")
        {
            port, host, data, functionNetwork, accountConcurrency, memoryBudget, maxColdStarts, idleTimeout, asyncRetryDelay, unusedCodeRetention, logMaxMb, otlpEndpoint, publicMetrics,
            database, sharedDir, nodeId, advertiseUrl,
        };
        serveCommand.SetAction((result, cancellationToken) => serve(new LaminaOptions
        {
            Port = result.GetValue(port),
            Host = result.GetValue(host)!,
            DataDirectory = result.GetValue(data)!,
            FunctionNetwork = result.GetValue(functionNetwork) == "on",
            AccountConcurrency = result.GetValue(accountConcurrency),
            MemoryBudgetMb = result.GetValue(memoryBudget),
            MaxColdStarts = result.GetValue(maxColdStarts),
            IdleEnvironmentLifetime = TimeSpan.FromSeconds(result.GetValue(idleTimeout)),
            AsyncRetryDelay = TimeSpan.FromSeconds(result.GetValue(asyncRetryDelay)),
            UnusedCodeRetention = TimeSpan.FromSeconds(result.GetValue(unusedCodeRetention)),
            LogMaxMb = result.GetValue(logMaxMb),
            OtlpEndpoint = result.GetValue(otlpEndpoint),
            PublicMetrics = result.GetValue(publicMetrics),
            Database = result.GetValue(database),
            SharedDirectory = result.GetValue(sharedDir),
            NodeId = result.GetValue(nodeId),
            AdvertiseUrl = result.GetValue(advertiseUrl),
        }, cancellationToken));
        // Named as users type it (./lamina), not after the server's assembly as RootCommand would be.
        return new Command("lamina", Description)
        {
            serveCommand, KeysCommand.Build(), BackupCommand.Build(), EventsCommand.Build(), LogsCommand.Build(),
            CloudFormation.DeployCommand.BuildDeploy(), CloudFormation.DeployCommand.BuildDeleteStack(), new HelpOption(), new VersionOption(),
        };
    }

    /// <summary>
    /// Parses and runs the command line: 2 with each problem named (<c>lamina: …</c>) when it does not parse, else
    /// what the command returns. No arguments, or <c>help</c>, show the help.
    /// </summary>
    public static Task<int> InvokeAsync(string[] args, Func<LaminaOptions, CancellationToken, Task<int>> serve)
    {
        if (args is [] or ["help"])
        {
            args = ["--help"];
        }
        var result = Build(serve).Parse(args);
        if (result.Errors.Count > 0)
        {
            foreach (var error in result.Errors)
            {
                Console.Error.WriteLine($"lamina: {error.Message}");
            }
            Console.Error.WriteLine($"lamina: see 'lamina {PathOf(result.CommandResult)} --help' for the options");
            return Task.FromResult(2);
        }
        // The host stops gracefully on SIGTERM and Ctrl+C itself; System.CommandLine must not cut that short.
        return result.InvokeAsync(new InvocationConfiguration { ProcessTerminationTimeout = null });
    }

    // "events list" for the list command of events; "serve" for the root, whose options are serve's.
    private static string PathOf(CommandResult command)
    {
        var names = new List<string>();
        for (SymbolResult? at = command; at is CommandResult { Parent: not null } c; at = c.Parent)
        {
            names.Insert(0, c.Command.Name);
        }
        return names.Count == 0 ? "serve" : string.Join(' ', names);
    }

    private static Option<int> Number(string name, string description, int defaultValue, int min, int max, string what) => new(name)
    {
        Description = description,
        HelpName = "n",
        DefaultValueFactory = _ => defaultValue,
        CustomParser = r => int.TryParse(Single(r), NumberStyles.None, CultureInfo.InvariantCulture, out var value) && value >= min && value <= max
            ? value
            : Fail<int>(r, $"{name} must be {what}, not '{Single(r)}'"),
    };

    /// <summary><c>--data</c>: a data directory, made absolute; the server's default when absent.</summary>
    internal static Option<string> DataOption(string description) => new("--data")
    {
        Description = description,
        HelpName = "dir",
        DefaultValueFactory = _ => new LaminaOptions().DataDirectory,
        CustomParser = r => Path.GetFullPath(Single(r)),
    };

    /// <summary><c>--database</c>: a cluster's PostgreSQL URL, else <c>$LAMINA_DATABASE</c>; null on a single machine.</summary>
    internal static Option<string?> DatabaseOption(string description) => new("--database")
    {
        Description = description,
        HelpName = "postgresql://user:pass@host:port/db",
        DefaultValueFactory = _ => Environment.GetEnvironmentVariable("LAMINA_DATABASE") is { Length: > 0 } fromEnvironment ? fromEnvironment : null,
        CustomParser = r => Storage.PostgresUrl.TryParse(Single(r), out _, out var why) ? Single(r) : Fail<string?>(r, $"--database: {why}"),
    };

    /// <summary>The server to talk to: <c>--endpoint</c>, else <c>$LAMINA_ENDPOINT</c>, else the default local one.</summary>
    internal static Option<string> EndpointOption() => new("--endpoint")
    {
        Description = "The server (requests are signed with AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY when set: a key of lamina keys)",
        HelpName = "url",
        DefaultValueFactory = _ => Environment.GetEnvironmentVariable("LAMINA_ENDPOINT") is { Length: > 0 } fromEnvironment ? fromEnvironment : "http://127.0.0.1:9000",
    };

    internal static string Single(ArgumentResult result) => result.Tokens.Count > 0 ? result.Tokens[^1].Value : "";

    internal static T Fail<T>(ArgumentResult result, string message)
    {
        result.AddError(message);
        return default!;
    }
}
