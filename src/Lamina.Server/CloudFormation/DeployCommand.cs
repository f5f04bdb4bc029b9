using System.CommandLine;
using System.Globalization;
using System.IO.Compression;
using System.Security.Cryptography;
using System.Text.Json.Nodes;
using System.Xml.Linq;
using Lamina.Server.Hosting;
using Spectre.Console;

namespace Lamina.Server.CloudFormation;

/// <summary>
/// <c>lamina deploy [template.yaml] [--stack-name N] [--parameter-overrides K=V …]</c>: packages the template's local
/// code folders (CodeUri, ContentUri, Code, Content) as zips into a deployment bucket of the server's S3, creates and
/// executes a change set on its CloudFormation API, shows each resource's status as it changes and prints the
/// Outputs. <c>lamina delete-stack N</c> deletes a stack the same way. Both are clients of the server's public APIs,
/// exactly as the AWS CLI would be.
/// </summary>
internal static partial class DeployCommand
{
    private const string Bucket = "lamina-deployments";
    private static readonly string[] DefaultTemplates = ["template.yaml", "template.yml", "template.json"];

    public static Command BuildDeploy()
    {
        var template = new Argument<string?>("template") { Description = "The template (default: template.yaml, template.yml or template.json here)", Arity = ArgumentArity.ZeroOrOne };
        var stackName = new Option<string?>("--stack-name") { Description = "The stack (default: the template's folder name)", HelpName = "name" };
        var overrides = new Option<string[]>("--parameter-overrides")
        {
            Description = "Template parameters, Key=Value",
            HelpName = "K=V",
            AllowMultipleArgumentsPerToken = true,
            Arity = ArgumentArity.ZeroOrMore,
        };
        var bucket = new Option<string>("--s3-bucket") { Description = "The bucket of the server's S3 that code is packaged into", HelpName = "bucket", DefaultValueFactory = _ => Bucket };
        var noExecute = new Option<bool>("--no-execute-changeset") { Description = "Create the change set and show it, but do not run it" };
        var endpoint = CommandLine.EndpointOption();
        var command = new Command("deploy", "Deploy a SAM or CloudFormation template as a stack: package local code, create and run a change set, show progress and outputs")
        {
            template, stackName, overrides, bucket, noExecute, endpoint,
        };
        command.SetAction(async (r, cancellationToken) =>
        {
            var parameters = new List<(string, string)>();
            foreach (var pair in r.GetValue(overrides) ?? [])
            {
                var eq = pair.IndexOf('=', StringComparison.Ordinal);
                if (eq <= 0)
                {
                    System.Console.Error.WriteLine($"lamina deploy: --parameter-overrides takes Key=Value, not '{pair}'");
                    return 2;
                }
                parameters.Add((pair[..eq], pair[(eq + 1)..]));
            }
            return await DeployAsync(r.GetValue(endpoint)!, r.GetValue(template), r.GetValue(stackName), parameters, r.GetValue(bucket)!, r.GetValue(noExecute), cancellationToken);
        });
        return command;
    }

    public static Command BuildDeleteStack()
    {
        var name = new Argument<string>("stack") { Description = "The stack's name" };
        var endpoint = CommandLine.EndpointOption();
        var command = new Command("delete-stack", "Delete a stack and its resources, showing each as it goes") { name, endpoint };
        command.SetAction((r, cancellationToken) => DeleteAsync(r.GetValue(endpoint)!, r.GetValue(name)!, cancellationToken));
        return command;
    }

    // ---- deploy -------------------------------------------------------------------------------------------------------

    /// <summary>Spectre's console; wide when the output is a file or a pipe, so lines (URLs, ARNs) are never wrapped.</summary>
    private static IAnsiConsole Console()
    {
        var console = AnsiConsole.Console;
        if (!console.Profile.Capabilities.Interactive)
        {
            console.Profile.Width = 400;
        }
        return console;
    }

    private static async Task<int> DeployAsync(string endpoint, string? templatePath, string? stackName, List<(string Key, string Value)> parameters, string bucket,
        bool noExecute, CancellationToken cancellationToken)
    {
        templatePath ??= DefaultTemplates.FirstOrDefault(File.Exists);
        if (templatePath is null || !File.Exists(templatePath))
        {
            System.Console.Error.WriteLine($"lamina deploy: no template: {(templatePath is null ? "no template.yaml here; name one" : templatePath + " does not exist")}");
            return 2;
        }
        templatePath = Path.GetFullPath(templatePath);
        var folder = Path.GetDirectoryName(templatePath)!;
        stackName ??= StackNameOf(folder);
        var console = Console();
        using var client = new DeployClient(endpoint);
        try
        {
            JsonObject template;
            try
            {
                template = TemplateReader.Read(await File.ReadAllTextAsync(templatePath, cancellationToken));
            }
            catch (CloudFormationException e)
            {
                System.Console.Error.WriteLine($"lamina deploy: {templatePath}: {e.Message}");
                return 1;
            }
            var artifacts = await PackageAsync(client, template, folder, bucket, console, cancellationToken);
            var body = template.ToJsonString(new System.Text.Json.JsonSerializerOptions { WriteIndented = true });
            var request = new Dictionary<string, string>(StringComparer.Ordinal)
            {
                ["StackName"] = stackName,
                ["ChangeSetName"] = "lamina-deploy-" + TimeProvider.System.GetUtcNow().ToUnixTimeMilliseconds().ToString(CultureInfo.InvariantCulture),
                ["Capabilities.member.1"] = "CAPABILITY_IAM",
                ["Capabilities.member.2"] = "CAPABILITY_NAMED_IAM",
                ["Capabilities.member.3"] = "CAPABILITY_AUTO_EXPAND",
            };
            if (body.Length > 51_200)
            {
                var key = "templates/" + Convert.ToHexStringLower(SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(body))) + ".json";
                await client.UploadAsync(bucket, key, System.Text.Encoding.UTF8.GetBytes(body), cancellationToken);
                request["TemplateURL"] = $"https://s3.amazonaws.com/{bucket}/{key}";
            }
            else
            {
                request["TemplateBody"] = body;
            }
            for (var i = 0; i < parameters.Count; i++)
            {
                request[$"Parameters.member.{i + 1}.ParameterKey"] = parameters[i].Key;
                request[$"Parameters.member.{i + 1}.ParameterValue"] = parameters[i].Value;
            }
            var existing = await FindStackAsync(client, stackName, cancellationToken);
            var update = existing is not null && DeployClient.Child(existing, "StackStatus") != "REVIEW_IN_PROGRESS";
            if (update && DeployClient.Child(existing, "StackStatus") == "ROLLBACK_COMPLETE")
            {
                console.MarkupLine($"[yellow]Stack {Markup.Escape(stackName)} is ROLLBACK_COMPLETE (its first deploy failed): deleting it first[/]");
                await DeleteAndWaitAsync(client, stackName, console, cancellationToken);
                update = false;
            }
            request["ChangeSetType"] = update ? "UPDATE" : "CREATE";
            if (update)
            {
                // Parameters not given keep their values, as `aws cloudformation deploy` does.
                var index = parameters.Count;
                foreach (var kept in DeployClient.Members(existing, "Parameters").Select(p => DeployClient.Child(p, "ParameterKey")!)
                    .Where(k => parameters.All(p => p.Key != k) && Declared(template, k)))
                {
                    index++;
                    request[$"Parameters.member.{index}.ParameterKey"] = kept;
                    request[$"Parameters.member.{index}.UsePreviousValue"] = "true";
                }
            }
            var created = await client.CallAsync("CreateChangeSet", request, cancellationToken);
            var changeSetId = DeployClient.Child(created, "Id")!;
            var changeSet = await client.CallAsync("DescribeChangeSet", new() { ["ChangeSetName"] = changeSetId }, cancellationToken);
            var status = DeployClient.Child(changeSet, "Status");
            var reason = DeployClient.Child(changeSet, "StatusReason") ?? "";
            if (status == "FAILED")
            {
                await client.CallAsync("DeleteChangeSet", new() { ["ChangeSetName"] = changeSetId }, cancellationToken);
                if (reason.Contains("didn't contain changes", StringComparison.Ordinal))
                {
                    console.MarkupLine($"No changes to deploy: stack [bold]{Markup.Escape(stackName)}[/] is up to date.");
                    await PrintOutputsAsync(client, endpoint, stackName, console, cancellationToken);
                    return 0;
                }
                console.MarkupLine($"[red]The change set failed:[/] {Markup.Escape(reason)}");
                return 1;
            }
            PrintChanges(changeSet, console, artifacts);
            if (noExecute)
            {
                console.MarkupLine($"Change set [bold]{Markup.Escape(changeSetId)}[/] is ready; run it with: aws cloudformation execute-change-set --change-set-name {Markup.Escape(changeSetId)}");
                return 0;
            }
            var stackId = DeployClient.Child(created, "StackId")!;
            var final = await RunAndWatchAsync(client, stackId, stackName, console,
                token => client.CallAsync("ExecuteChangeSet", new() { ["ChangeSetName"] = changeSetId }, token), cancellationToken);
            if (final is "CREATE_COMPLETE" or "UPDATE_COMPLETE")
            {
                console.MarkupLine($"[green]Stack {Markup.Escape(stackName)}: {final}[/]");
                await PrintOutputsAsync(client, endpoint, stackName, console, cancellationToken);
                return 0;
            }
            console.MarkupLine($"[red]Stack {Markup.Escape(stackName)}: {Markup.Escape(final)}[/]");
            return 1;
        }
        catch (CloudFormationException e)
        {
            System.Console.Error.WriteLine($"lamina deploy: {e.Code}: {e.Message}");
            return 1;
        }
        catch (HttpRequestException e)
        {
            System.Console.Error.WriteLine($"lamina deploy: cannot reach the server at {endpoint}: {e.Message}");
            return 1;
        }
    }

    private static bool Declared(JsonObject template, string parameter) => (template["Parameters"] as JsonObject)?.ContainsKey(parameter) == true;

    /// <summary>A stack name from a folder name: letters, digits and hyphens, starting with a letter.</summary>
    internal static string StackNameOf(string folder)
    {
        var name = new string(Path.GetFileName(folder).Select(static c => char.IsAsciiLetterOrDigit(c) ? c : '-').ToArray()).Trim('-');
        return name.Length == 0 || !char.IsAsciiLetter(name[0]) ? "stack-" + name : name;
    }

    private static async Task<XElement?> FindStackAsync(DeployClient client, string stackName, CancellationToken cancellationToken)
    {
        try
        {
            var result = await client.CallAsync("DescribeStacks", new() { ["StackName"] = stackName }, cancellationToken);
            return DeployClient.Members(result, "Stacks").FirstOrDefault();
        }
        catch (CloudFormationException e) when (e.Message.Contains("does not exist", StringComparison.Ordinal))
        {
            return null;
        }
    }

    // ---- packaging ----------------------------------------------------------------------------------------------------

    /// <summary>
    /// Replaces each local code location of the template by the S3 location of its zip (uploaded once per content hash),
    /// as <c>aws cloudformation package</c> does. Returns what was packaged, for the summary.
    /// </summary>
    internal static async Task<List<(string LogicalId, string Path, string Key)>> PackageAsync(DeployClient client, JsonObject template, string folder, string bucket,
        IAnsiConsole console, CancellationToken cancellationToken)
    {
        var packaged = new List<(string, string, string)>();
        var globalCodeUri = (template["Globals"] as JsonObject)?["Function"]?["CodeUri"];
        var bucketReady = false;
        async Task<string> UploadAsync(string logicalId, string path)
        {
            var full = Path.GetFullPath(Path.Combine(folder, path));
            byte[] zip;
            if (Directory.Exists(full))
            {
                zip = Zip(full);
            }
            else if (File.Exists(full))
            {
                zip = full.EndsWith(".zip", StringComparison.OrdinalIgnoreCase) || full.EndsWith(".jar", StringComparison.OrdinalIgnoreCase)
                    ? await File.ReadAllBytesAsync(full, cancellationToken)
                    : ZipFile(full);
            }
            else
            {
                throw new CloudFormationException("PackageError", $"{logicalId}: {path} is neither a folder nor a file (relative to {folder})");
            }
            if (!bucketReady)
            {
                await client.EnsureBucketAsync(bucket, cancellationToken);
                bucketReady = true;
            }
            var key = Convert.ToHexStringLower(SHA256.HashData(zip)) + ".zip";
            await client.UploadAsync(bucket, key, zip, cancellationToken);
            packaged.Add((logicalId, path, key));
            return key;
        }
        foreach (var (logicalId, node) in template["Resources"] as JsonObject ?? [])
        {
            if (node is not JsonObject resource || resource["Type"] is not JsonValue typeNode)
            {
                continue;
            }
            var properties = resource["Properties"] as JsonObject;
            switch (typeNode.GetValue<string>())
            {
                case "AWS::Serverless::Function":
                    {
                        properties ??= [];
                        resource["Properties"] = properties;
                        if (properties.ContainsKey("InlineCode") || properties.ContainsKey("ImageUri") || Intrinsics.Stringify(properties["PackageType"]) == "Image")
                        {
                            break;
                        }
                        var codeUri = properties["CodeUri"] ?? globalCodeUri;
                        if (codeUri is null or JsonValue && Local(codeUri) is var local && local is not null)
                        {
                            properties["CodeUri"] = $"s3://{bucket}/{await UploadAsync(logicalId, local)}";
                        }
                        break;
                    }
                case "AWS::Serverless::LayerVersion":
                    if (properties?["ContentUri"] is JsonValue content && Local(content) is { } layerPath)
                    {
                        properties["ContentUri"] = $"s3://{bucket}/{await UploadAsync(logicalId, layerPath)}";
                    }
                    break;
                case "AWS::Lambda::Function":
                    if (properties?["Code"] is JsonValue code && Local(code) is { } codePath)
                    {
                        properties["Code"] = new JsonObject { ["S3Bucket"] = bucket, ["S3Key"] = await UploadAsync(logicalId, codePath) };
                    }
                    break;
                case "AWS::Lambda::LayerVersion":
                    if (properties?["Content"] is JsonValue layer && Local(layer) is { } contentPath)
                    {
                        properties["Content"] = new JsonObject { ["S3Bucket"] = bucket, ["S3Key"] = await UploadAsync(logicalId, contentPath) };
                    }
                    break;
            }
        }
        foreach (var (logicalId, path, key) in packaged)
        {
            console.MarkupLine($"Packaged {Markup.Escape(logicalId)}: {Markup.Escape(path)} → s3://{Markup.Escape(bucket)}/{Markup.Escape(key)}");
        }
        return packaged;
    }

    /// <summary>A local path (relative to the template) where a template gives one; null for S3 locations and intrinsics. Absent means ".".</summary>
    private static string? Local(JsonNode? node) => node switch
    {
        null => ".",
        JsonValue v when v.TryGetValue<string>(out var s) && !s.StartsWith("s3://", StringComparison.Ordinal) && !s.StartsWith("https://", StringComparison.Ordinal) => s,
        _ => null,
    };

    /// <summary>A folder as a zip: entries in order, fixed times, so the same code gives the same key and no new deployment.</summary>
    internal static byte[] Zip(string folder)
    {
        using var buffer = new MemoryStream();
        using (var zip = new ZipArchive(buffer, ZipArchiveMode.Create, leaveOpen: true))
        {
            foreach (var file in Directory.EnumerateFiles(folder, "*", SearchOption.AllDirectories).Order(StringComparer.Ordinal))
            {
                var name = Path.GetRelativePath(folder, file).Replace(Path.DirectorySeparatorChar, '/');
                Add(zip, name, file);
            }
        }
        return buffer.ToArray();
    }

    private static byte[] ZipFile(string file)
    {
        using var buffer = new MemoryStream();
        using (var zip = new ZipArchive(buffer, ZipArchiveMode.Create, leaveOpen: true))
        {
            Add(zip, Path.GetFileName(file), file);
        }
        return buffer.ToArray();
    }

    private static void Add(ZipArchive zip, string name, string file)
    {
        var entry = zip.CreateEntry(name, CompressionLevel.Optimal);
        entry.LastWriteTime = new DateTimeOffset(1980, 1, 1, 0, 0, 0, TimeSpan.Zero);
        // Executable bits kept (a provided runtime's bootstrap); everything readable.
        var mode = (int)File.GetUnixFileMode(file);
        entry.ExternalAttributes = ((mode & 0b001_001_001) != 0 ? Convert.ToInt32("100755", 8) : Convert.ToInt32("100644", 8)) << 16;
        using var target = entry.Open();
        using var source = File.OpenRead(file);
        source.CopyTo(target);
    }

    // ---- progress -----------------------------------------------------------------------------------------------------

    private static void PrintChanges(XElement changeSet, IAnsiConsole console, List<(string LogicalId, string Path, string Key)> artifacts)
    {
        var changes = DeployClient.Members(changeSet, "Changes").Select(static c => c.Elements().First(e => e.Name.LocalName == "ResourceChange")).ToList();
        if (changes.Count == 0)
        {
            console.MarkupLine("The change set changes no resource (outputs or parameters only).");
            return;
        }
        var table = new Table().AddColumns("Action", "Logical id", "Type", "Replacement");
        foreach (var change in changes)
        {
            var action = DeployClient.Child(change, "Action") ?? "";
            var color = action switch { "Add" => "green", "Remove" => "red", _ => "yellow" };
            table.AddRow($"[{color}]{action}[/]", Markup.Escape(DeployClient.Child(change, "LogicalResourceId") ?? ""),
                Markup.Escape(DeployClient.Child(change, "ResourceType") ?? ""), Markup.Escape(DeployClient.Child(change, "Replacement") ?? ""));
        }
        console.Write(table);
        _ = artifacts;
    }

    /// <summary>
    /// Starts the operation and follows the stack's events until it ends: a live table of each resource's status on a
    /// terminal, one line per event otherwise. Returns the stack's final status.
    /// </summary>
    private static async Task<string> RunAndWatchAsync(DeployClient client, string stackId, string stackName, IAnsiConsole console,
        Func<CancellationToken, Task<XElement>> start, CancellationToken cancellationToken)
    {
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var e in await EventsAsync(client, stackId, cancellationToken))
        {
            seen.Add(DeployClient.Child(e, "EventId")!);
        }
        var operation = start(cancellationToken);
        var resources = new Dictionary<string, (string Type, string Status, string Reason)>(StringComparer.Ordinal);
        var status = "";
        async Task<bool> PollAsync()
        {
            var fresh = (await EventsAsync(client, stackId, cancellationToken)).Where(e => seen.Add(DeployClient.Child(e, "EventId")!)).Reverse().ToList();
            foreach (var e in fresh)
            {
                var logicalId = DeployClient.Child(e, "LogicalResourceId")!;
                var type = DeployClient.Child(e, "ResourceType")!;
                var eventStatus = DeployClient.Child(e, "ResourceStatus")!;
                var reason = DeployClient.Child(e, "ResourceStatusReason") ?? "";
                if (type == "AWS::CloudFormation::Stack" && logicalId == stackName)
                {
                    status = eventStatus;
                }
                else
                {
                    resources[logicalId] = (type, eventStatus, reason);
                }
                if (!console.Profile.Capabilities.Interactive)
                {
                    // Plain lines (no wrapping, no colour) when the output is a file or a pipe.
                    System.Console.WriteLine($"{DateTimeOffset.Parse(DeployClient.Child(e, "Timestamp")!, CultureInfo.InvariantCulture).ToLocalTime().ToString("HH:mm:ss", CultureInfo.InvariantCulture)}  "
                        + $"{eventStatus,-45} {logicalId} ({type}){(reason.Length > 0 ? " " + reason : "")}");
                }
            }
            return operation.IsCompleted && status.Length > 0 && !status.EndsWith("_IN_PROGRESS", StringComparison.Ordinal);
        }
        Table Render()
        {
            var table = new Table().Title($"[bold]{Markup.Escape(stackName)}[/] {(status.Length > 0 ? $"[{Color(status)}]{Markup.Escape(status)}[/]" : "")}")
                .AddColumns("Logical id", "Type", "Status", "Reason");
            foreach (var (logicalId, (type, resourceStatus, reason)) in resources)
            {
                table.AddRow(Markup.Escape(logicalId), Markup.Escape(type), $"[{Color(resourceStatus)}]{Markup.Escape(resourceStatus)}[/]", Markup.Escape(reason));
            }
            return table;
        }
        if (console.Profile.Capabilities.Interactive)
        {
            await console.Live(Render()).StartAsync(async live =>
            {
                while (!await PollAsync())
                {
                    live.UpdateTarget(Render());
                    await Task.Delay(250, cancellationToken);
                }
                live.UpdateTarget(Render());
            });
        }
        else
        {
            while (!await PollAsync())
            {
                await Task.Delay(250, cancellationToken);
            }
        }
        await operation;
        return status;
    }

    private static string Color(string status) => status switch
    {
        _ when status.Contains("FAILED", StringComparison.Ordinal) || status.Contains("ROLLBACK", StringComparison.Ordinal) => "red",
        _ when status.EndsWith("_COMPLETE", StringComparison.Ordinal) || status == "DELETE_SKIPPED" => "green",
        _ => "yellow",
    };

    /// <summary>The stack's events, newest first (the first page is all a deploy needs: each poll reads what is new).</summary>
    private static async Task<List<XElement>> EventsAsync(DeployClient client, string stackId, CancellationToken cancellationToken)
    {
        var events = new List<XElement>();
        string? token = null;
        do
        {
            var request = new Dictionary<string, string>(StringComparer.Ordinal) { ["StackName"] = stackId };
            if (token is not null)
            {
                request["NextToken"] = token;
            }
            var result = await client.CallAsync("DescribeStackEvents", request, cancellationToken);
            events.AddRange(DeployClient.Members(result, "StackEvents"));
            token = DeployClient.Child(result, "NextToken");
        }
        while (token is not null && events.Count < 1000);
        return events;
    }

    private static async Task PrintOutputsAsync(DeployClient client, string endpoint, string stackName, IAnsiConsole console, CancellationToken cancellationToken)
    {
        var stack = await FindStackAsync(client, stackName, cancellationToken);
        var outputs = DeployClient.Members(stack, "Outputs")
            .Select(o => (Key: DeployClient.Child(o, "OutputKey") ?? "", Value: DeployClient.Child(o, "OutputValue") ?? "", Description: DeployClient.Child(o, "Description") ?? ""))
            .ToList();
        if (outputs.Count == 0)
        {
            return;
        }
        if (!console.Profile.Capabilities.Interactive)
        {
            System.Console.WriteLine("Outputs:");
            foreach (var (key, value, _) in outputs)
            {
                System.Console.WriteLine($"  {key} = {value}");
                if (LocalUrl(value, endpoint) is { } local)
                {
                    System.Console.WriteLine($"  {new string(' ', key.Length)}   on this server: {local}");
                }
            }
            return;
        }
        var table = new Table().Title("Outputs").AddColumns("Key", "Value", "Description");
        foreach (var (key, value, description) in outputs)
        {
            var shown = Markup.Escape(value) + (LocalUrl(value, endpoint) is { } local ? $"\n[dim]on this server:[/] {Markup.Escape(local)}" : "");
            table.AddRow(Markup.Escape(key), shown, Markup.Escape(description));
        }
        console.Write(table);
    }

    /// <summary>An API Gateway URL as AWS would serve it, as this server serves it: <c>http://ID.execute-api.localhost:PORT/…</c>.</summary>
    internal static string? LocalUrl(string value, string endpoint)
    {
        var match = ExecuteApiUrl().Match(value);
        if (!match.Success || !Uri.TryCreate(endpoint, UriKind.Absolute, out var server))
        {
            return null;
        }
        return $"http://{match.Groups[1].Value}.execute-api.localhost:{server.Port}{match.Groups[2].Value}";
    }

    [System.Text.RegularExpressions.GeneratedRegex(@"^https://([a-z0-9]+)\.execute-api\.[a-z0-9-]+\.amazonaws\.com(/\S*)?$")]
    private static partial System.Text.RegularExpressions.Regex ExecuteApiUrl();

    // ---- delete -------------------------------------------------------------------------------------------------------

    private static async Task<int> DeleteAsync(string endpoint, string stackName, CancellationToken cancellationToken)
    {
        using var client = new DeployClient(endpoint);
        var console = Console();
        try
        {
            if (await FindStackAsync(client, stackName, cancellationToken) is null)
            {
                System.Console.Error.WriteLine($"lamina delete-stack: Stack with id {stackName} does not exist");
                return 1;
            }
            var final = await DeleteAndWaitAsync(client, stackName, console, cancellationToken);
            console.MarkupLine(final == "DELETE_COMPLETE" ? $"[green]Stack {Markup.Escape(stackName)}: DELETE_COMPLETE[/]" : $"[red]Stack {Markup.Escape(stackName)}: {Markup.Escape(final)}[/]");
            return final == "DELETE_COMPLETE" ? 0 : 1;
        }
        catch (CloudFormationException e)
        {
            System.Console.Error.WriteLine($"lamina delete-stack: {e.Code}: {e.Message}");
            return 1;
        }
        catch (HttpRequestException e)
        {
            System.Console.Error.WriteLine($"lamina delete-stack: cannot reach the server at {endpoint}: {e.Message}");
            return 1;
        }
    }

    private static async Task<string> DeleteAndWaitAsync(DeployClient client, string stackName, IAnsiConsole console, CancellationToken cancellationToken)
    {
        var stack = await FindStackAsync(client, stackName, cancellationToken);
        var stackId = DeployClient.Child(stack, "StackId")!;
        return await RunAndWatchAsync(client, stackId, stackName, console, token => client.CallAsync("DeleteStack", new() { ["StackName"] = stackId }, token), cancellationToken);
    }
}
