using System.Net.Http.Headers;

namespace Lamina.Server.Hosting;

/// <summary>
/// <c>lamina events</c>: the operator's view of failed asynchronous work, over the server's
/// <c>/lamina/v1/async-events</c> API. Prints the server's JSON.
/// </summary>
internal static class EventsCommand
{
    public const string Usage = """
        usage: lamina events list    [--function NAME] [--state queued|running|failed] [--limit N]
               lamina events show    ID
               lamina events redrive ID | --function NAME | --all
               lamina events purge   ID | --function NAME | --all
          --endpoint URL   the server (default $LAMINA_ENDPOINT, else http://127.0.0.1:9000)
          Requests are signed with AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY when set (a key of ./lamina keys).

          list     queued, running and failed async events, oldest first (default: 100 of them)
          show     one event: its payload, attempts, last error
          redrive  queue failed events again (attempts and age start afresh)
          purge    delete failed events
        """;

    public static async Task<int> RunAsync(string[] args)
    {
        if (args.Length == 0 || args[0] is "help" or "--help" or "-h")
        {
            Console.WriteLine(Usage);
            return args.Length == 0 ? 2 : 0;
        }
        var verb = args[0];
        var endpoint = Environment.GetEnvironmentVariable("LAMINA_ENDPOINT") is { Length: > 0 } fromEnvironment ? fromEnvironment : "http://127.0.0.1:9000";
        var query = new List<string>();
        string? id = null;
        for (var i = 1; i < args.Length; i++)
        {
            var arg = args[i];
            string Value() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{arg} needs a value");
            try
            {
                switch (arg)
                {
                    case "--endpoint":
                        endpoint = Value();
                        break;
                    case "--function":
                        query.Add("function=" + Uri.EscapeDataString(Value()));
                        break;
                    case "--state" when verb == "list":
                        query.Add("state=" + Uri.EscapeDataString(Value()));
                        break;
                    case "--limit" when verb == "list":
                        query.Add("limit=" + Uri.EscapeDataString(Value()));
                        break;
                    case "--all" when verb is "redrive" or "purge":
                        query.Add("all=true");
                        break;
                    case not null when !arg.StartsWith("--", StringComparison.Ordinal) && id is null && verb is "show" or "redrive" or "purge":
                        id = arg;
                        break;
                    default:
                        Console.Error.WriteLine($"lamina events: unexpected '{arg}'\n{Usage}");
                        return 2;
                }
            }
            catch (ArgumentException e)
            {
                Console.Error.WriteLine($"lamina events: {e.Message}\n{Usage}");
                return 2;
            }
        }
        if (id is not null)
        {
            query.Add("id=" + Uri.EscapeDataString(id));
        }

        var (method, path) = verb switch
        {
            "list" => (HttpMethod.Get, "/lamina/v1/async-events"),
            "show" when id is not null => (HttpMethod.Get, "/lamina/v1/async-events/" + Uri.EscapeDataString(id)),
            "redrive" => (HttpMethod.Post, "/lamina/v1/async-events/redrive"),
            "purge" => (HttpMethod.Delete, "/lamina/v1/async-events"),
            _ => (null, null),
        };
        if (method is null)
        {
            Console.Error.WriteLine($"lamina events: unknown command '{verb}'{(verb == "show" ? " (show needs an ID)" : "")}\n{Usage}");
            return 2;
        }
        if (verb == "show")
        {
            query.Clear();
        }

        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(30) };
        var uri = new Uri(endpoint.TrimEnd('/') + path + (query.Count > 0 ? "?" + string.Join('&', query) : ""));
        try
        {
            using var request = new HttpRequestMessage(method, uri);
            request.Headers.Accept.Add(new MediaTypeWithQualityHeaderValue("application/json"));
            Protocols.SigV4.SignFromEnvironment(request, [], "lamina", TimeProvider.System.GetUtcNow());
            using var response = await http.SendAsync(request);
            var body = await response.Content.ReadAsStringAsync();
            if (!response.IsSuccessStatusCode)
            {
                Console.Error.WriteLine($"lamina events: {(int)response.StatusCode} {body}");
                return 1;
            }
            Console.WriteLine(body);
            return 0;
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
        {
            Console.Error.WriteLine($"lamina events: cannot reach the server at {endpoint}: {e.Message}");
            return 1;
        }
    }
}
