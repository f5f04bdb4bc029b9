using System.Diagnostics.CodeAnalysis;
using System.Globalization;

namespace Lamina.Server.Hosting;

/// <summary>The <c>lamina</c> command line: <c>serve [--port N] [--host ADDR] [--data DIR]</c>.</summary>
internal static class CommandLine
{
    public const string Usage = """
        usage: lamina serve [--port 9000] [--host 127.0.0.1] [--data DIR] [--function-network on|off]
                    [--account-concurrency 1000] [--memory-budget MB] [--idle-timeout SECONDS]
                    [--async-retry-delay SECONDS] [--log-max-mb 1024]
                    [--otlp-endpoint URL] [--public-metrics]

          serve     start the Lamina server (Lambda API, invoke, runtime API)
          events    list, inspect, redrive and purge async events (lamina events help)
          logs      print a function's log lines, --follow for new ones (lamina logs help)
          keys      create, list and revoke access keys (lamina keys help)
            --port  TCP port to listen on (0 picks a free one; default 9000)
            --host  address to listen on (default 127.0.0.1)
            --data  data directory: state, code, sandboxes (default ~/.lamina)
            --function-network  outbound network for functions (default on; a function opts out with LAMINA_NETWORK=none)
            --account-concurrency  most invocations running at once, all functions together (default 1000, Lambda's)
            --memory-budget  most MB the live environments' MemorySize may add up to; idle ones are evicted
                             least recently used first to make room (default: the machine's memory)
            --idle-timeout   seconds an idle environment stays warm before it is stopped (default 600)
            --async-retry-delay  seconds before an async invocation's first retry; later ones double (default 60)
            --log-max-mb     most disk the function logs may use; the oldest events go first (default 1024)
            --otlp-endpoint  send traces to this OpenTelemetry collector (OTLP/HTTP, e.g. http://127.0.0.1:4318)
            --public-metrics serve /metrics without a signature even once access keys exist (for Prometheus scrapers)
        """;

    public static bool TryParse(string[] args, out string command, [NotNullWhen(true)] out LaminaOptions? options, [NotNullWhen(false)] out string? error)
    {
        options = new LaminaOptions();
        command = args.Length > 0 ? args[0] : "help";
        error = null;
        if (command is "help" or "--help" or "-h")
        {
            command = "help";
            return true;
        }
        if (command != "serve")
        {
            error = $"lamina: unknown command '{command}'\n{Usage}";
            options = null;
            return false;
        }

        for (var i = 1; i < args.Length; i++)
        {
            var arg = args[i];
            string? value = null;
            var eq = arg.IndexOf('=', StringComparison.Ordinal);
            if (arg.StartsWith("--", StringComparison.Ordinal) && eq > 0)
            {
                value = arg[(eq + 1)..];
                arg = arg[..eq];
            }
            else if (arg is "--port" or "--host" or "--data" or "--function-network" or "--account-concurrency" or "--memory-budget" or "--idle-timeout" or "--async-retry-delay" or "--log-max-mb" or "--otlp-endpoint")
            {
                if (i + 1 >= args.Length)
                {
                    error = $"lamina: {arg} needs a value\n{Usage}";
                    options = null;
                    return false;
                }
                value = args[++i];
            }

            switch (arg)
            {
                case "--port" when int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var port) && port <= 65535:
                    options.Port = port;
                    break;
                case "--port":
                    error = $"lamina: --port must be a number from 0 to 65535, not '{value}'";
                    options = null;
                    return false;
                case "--host":
                    options.Host = value!;
                    break;
                case "--data":
                    options.DataDirectory = Path.GetFullPath(value!);
                    break;
                case "--function-network" when value is "on" or "off":
                    options.FunctionNetwork = value == "on";
                    break;
                case "--function-network":
                    error = $"lamina: --function-network must be 'on' or 'off', not '{value}'";
                    options = null;
                    return false;
                case "--account-concurrency" when int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var limit) && limit is >= 1 and <= 1_000_000:
                    options.AccountConcurrency = limit;
                    break;
                case "--account-concurrency":
                    error = $"lamina: --account-concurrency must be a number from 1 to 1000000, not '{value}'";
                    options = null;
                    return false;
                case "--memory-budget" when int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var budget) && budget >= 128:
                    options.MemoryBudgetMb = budget;
                    break;
                case "--memory-budget":
                    error = $"lamina: --memory-budget must be a number of MB, at least 128, not '{value}'";
                    options = null;
                    return false;
                case "--idle-timeout" when int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var idle) && idle >= 1:
                    options.IdleEnvironmentLifetime = TimeSpan.FromSeconds(idle);
                    break;
                case "--idle-timeout":
                    error = $"lamina: --idle-timeout must be a number of seconds, at least 1, not '{value}'";
                    options = null;
                    return false;
                case "--async-retry-delay" when double.TryParse(value, NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out var retry) && retry is >= 0 and <= 21600:
                    options.AsyncRetryDelay = TimeSpan.FromSeconds(retry);
                    break;
                case "--async-retry-delay":
                    error = $"lamina: --async-retry-delay must be a number of seconds from 0 to 21600, not '{value}'";
                    options = null;
                    return false;
                case "--log-max-mb" when int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var logMb) && logMb >= 1:
                    options.LogMaxMb = logMb;
                    break;
                case "--log-max-mb":
                    error = $"lamina: --log-max-mb must be a number of MB, at least 1, not '{value}'";
                    options = null;
                    return false;
                case "--otlp-endpoint" when Uri.TryCreate(value, UriKind.Absolute, out var otlp) && otlp.Scheme is "http" or "https":
                    options.OtlpEndpoint = value;
                    break;
                case "--otlp-endpoint":
                    error = $"lamina: --otlp-endpoint must be an http(s) URL, not '{value}'";
                    options = null;
                    return false;
                case "--public-metrics" when value is null:
                    options.PublicMetrics = true;
                    break;
                default:
                    error = $"lamina: unknown option '{arg}'\n{Usage}";
                    options = null;
                    return false;
            }
        }
        return true;
    }
}
