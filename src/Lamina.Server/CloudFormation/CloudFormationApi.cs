using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;
using Lamina.Server.Protocols;

namespace Lamina.Server.CloudFormation;

/// <summary>
/// CloudFormation's Query protocol (botocore's <c>cloudformation/2010-05-15</c>): form-encoded <c>Action=…</c> with
/// <c>Version=2010-05-15</c> on <c>POST /</c>, XML answers, <c>ErrorResponse</c> errors. Stacks, change sets, events,
/// resources, templates and exports; the work itself is <see cref="StackEngine"/>'s.
/// </summary>
internal static partial class CloudFormationApi
{
    public const string Version = "2010-05-15";
    private const string Namespace = "http://cloudformation.amazonaws.com/doc/2010-05-15/";
    private const int PageSize = 100;

    /// <summary>Whether a form-encoded request is CloudFormation's (its Version).</summary>
    public static bool Matches(Dictionary<string, string> form) => form.GetValueOrDefault("Version") == Version;

    public static async Task HandleAsync(HttpContext context, Dictionary<string, string> form, StackEngine engine)
    {
        var action = form.GetValueOrDefault("Action") ?? "";
        var requestId = Hosting.RequestIds.Of(context);
        try
        {
            var result = new StringBuilder();
            var cancellationToken = context.RequestAborted;
            switch (action)
            {
                case "CreateStack": await CreateStackAsync(form, engine, result, cancellationToken); break;
                case "UpdateStack": await UpdateStackAsync(form, engine, result, cancellationToken); break;
                case "DeleteStack": await DeleteStackAsync(form, engine, cancellationToken); break;
                case "DescribeStacks": DescribeStacks(form, engine, result); break;
                case "ListStacks": ListStacks(form, engine, result); break;
                case "DescribeStackEvents": DescribeStackEvents(form, engine, result); break;
                case "DescribeStackResource": DescribeStackResource(form, engine, result); break;
                case "DescribeStackResources": DescribeStackResources(form, engine, result); break;
                case "ListStackResources": ListStackResources(form, engine, result); break;
                case "GetTemplate": GetTemplate(form, engine, result); break;
                case "GetTemplateSummary": await GetTemplateSummaryAsync(form, engine, result, cancellationToken); break;
                case "ValidateTemplate": await ValidateTemplateAsync(form, engine, result, cancellationToken); break;
                case "CreateChangeSet": await CreateChangeSetAsync(form, engine, result, cancellationToken); break;
                case "DescribeChangeSet": DescribeChangeSet(form, engine, result); break;
                case "ExecuteChangeSet": await ExecuteChangeSetAsync(form, engine, cancellationToken); break;
                case "DeleteChangeSet": DeleteChangeSet(form, engine); break;
                case "ListChangeSets": ListChangeSets(form, engine, result); break;
                case "ListExports": ListExports(form, engine, result); break;
                case "ListImports": ListImports(form, engine, result); break;
                case "UpdateTerminationProtection": UpdateTerminationProtection(form, engine, result); break;
                default:
                    throw new CloudFormationException("InvalidAction", action.Length == 0
                        ? "Missing Action: name the operation."
                        : $"Lamina's CloudFormation does not serve the operation {action}.");
            }
            var xml = new StringBuilder();
            xml.Append("<?xml version=\"1.0\" encoding=\"UTF-8\"?>");
            xml.Append('<').Append(action).Append("Response xmlns=\"").Append(Namespace).Append("\">");
            xml.Append('<').Append(action).Append("Result>").Append(result).Append("</").Append(action).Append("Result>");
            xml.Append("<ResponseMetadata><RequestId>").Append(requestId).Append("</RequestId></ResponseMetadata>");
            xml.Append("</").Append(action).Append("Response>");
            await QueryProtocol.WriteXmlAsync(context, 200, xml);
        }
        catch (CloudFormationException e)
        {
            await WriteErrorAsync(context, e);
        }
    }

    /// <summary>An <c>ErrorResponse</c>: Type Sender for a client's mistake (4xx), Receiver for the service's (5xx).</summary>
    public static Task WriteErrorAsync(HttpContext context, CloudFormationException e)
    {
        var xml = new StringBuilder();
        xml.Append("<?xml version=\"1.0\" encoding=\"UTF-8\"?>");
        xml.Append("<ErrorResponse xmlns=\"").Append(Namespace).Append("\"><Error><Type>").Append(e.Status >= 500 ? "Receiver" : "Sender").Append("</Type>");
        Element(xml, "Code", e.Code);
        Element(xml, "Message", e.Message);
        xml.Append("</Error>");
        Element(xml, "RequestId", Hosting.RequestIds.Of(context));
        xml.Append("</ErrorResponse>");
        return QueryProtocol.WriteXmlAsync(context, e.Status, xml);
    }

    // ---- requests -------------------------------------------------------------------------------------------------------

    private static string Required(Dictionary<string, string> form, string name) => form.TryGetValue(name, out var value) && value.Length > 0
        ? value
        : throw CloudFormationException.Validation($"1 validation error detected: Value null at '{char.ToLowerInvariant(name[0])}{name[1..]}' failed to satisfy constraint: Member must not be null");

    private static List<string> Members(Dictionary<string, string> form, string name)
    {
        var values = new List<string>();
        for (var i = 1; form.TryGetValue($"{name}.member.{i}", out var value); i++)
        {
            values.Add(value);
        }
        return values;
    }

    private static List<ParameterInput> Parameters(Dictionary<string, string> form)
    {
        var parameters = new List<ParameterInput>();
        for (var i = 1; form.TryGetValue($"Parameters.member.{i}.ParameterKey", out var key); i++)
        {
            parameters.Add(new ParameterInput(key, form.GetValueOrDefault($"Parameters.member.{i}.ParameterValue"),
                form.GetValueOrDefault($"Parameters.member.{i}.UsePreviousValue") == "true"));
        }
        return parameters;
    }

    private static List<StackTag>? Tags(Dictionary<string, string> form)
    {
        if (!form.Keys.Any(static k => k.StartsWith("Tags", StringComparison.Ordinal)))
        {
            return null;
        }
        var tags = new List<StackTag>();
        for (var i = 1; form.TryGetValue($"Tags.member.{i}.Key", out var key); i++)
        {
            tags.Add(new StackTag(key, form.GetValueOrDefault($"Tags.member.{i}.Value") ?? ""));
        }
        return tags;
    }

    private static StackRequest Request(Dictionary<string, string> form) => new()
    {
        StackName = Required(form, "StackName"),
        TemplateBody = form.GetValueOrDefault("TemplateBody"),
        TemplateUrl = form.GetValueOrDefault("TemplateURL"),
        UsePreviousTemplate = form.GetValueOrDefault("UsePreviousTemplate") == "true",
        Parameters = Parameters(form),
        Capabilities = Members(form, "Capabilities"),
        Tags = Tags(form),
        NotificationArns = Members(form, "NotificationARNs"),
        RoleArn = form.GetValueOrDefault("RoleARN"),
        DisableRollback = form.GetValueOrDefault("DisableRollback") == "true" || form.GetValueOrDefault("OnFailure") is "DO_NOTHING",
        TerminationProtection = form.GetValueOrDefault("EnableTerminationProtection") == "true",
        ClientRequestToken = form.GetValueOrDefault("ClientRequestToken"),
    };

    private static void CheckStackName(string name)
    {
        if (!StackNamePattern().IsMatch(name))
        {
            throw CloudFormationException.Validation($"1 validation error detected: Value '{name}' at 'stackName' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z][-a-zA-Z0-9]*");
        }
    }

    private static StackRecord Stack(StackEngine engine, string nameOrId) =>
        engine.Store.FindStack(nameOrId) ?? throw CloudFormationException.StackNotFound(nameOrId);

    private static bool Stable(string status) => status is "CREATE_COMPLETE" or "UPDATE_COMPLETE" or "UPDATE_ROLLBACK_COMPLETE" or "IMPORT_COMPLETE" or "IMPORT_ROLLBACK_COMPLETE";

    // ---- stacks ---------------------------------------------------------------------------------------------------------

    private static async Task CreateStackAsync(Dictionary<string, string> form, StackEngine engine, StringBuilder result, CancellationToken cancellationToken)
    {
        var request = Request(form);
        CheckStackName(request.StackName);
        if (engine.Store.FindStack(request.StackName) is { } existing)
        {
            throw new CloudFormationException("AlreadyExistsException", $"Stack [{existing.StackName}] already exists");
        }
        var stackId = engine.NewStackId(request.StackName);
        var body = await engine.TemplateBodyAsync(request, null, cancellationToken);
        var prepared = engine.Prepare(body, request.StackName, stackId, request.Parameters, null, request.Capabilities, changeSet: false);
        var stack = NewStack(engine, request, stackId, prepared, "CREATE_IN_PROGRESS");
        try
        {
            engine.Store.SaveStack(stack);
        }
        catch (Microsoft.Data.Sqlite.SqliteException e) when (e.SqliteErrorCode == 19)
        {
            throw new CloudFormationException("AlreadyExistsException", $"Stack [{request.StackName}] already exists");
        }
        engine.Start(stackId, engine.CreateRunAsync);
        await engine.WaitBrieflyAsync(stackId, cancellationToken);
        Element(result, "StackId", stackId);
    }

    private static StackRecord NewStack(StackEngine engine, StackRequest request, string stackId, PreparedTemplate prepared, string status) => new()
    {
        StackId = stackId,
        StackName = request.StackName,
        Status = status,
        CreatedAt = engine.Now,
        Description = prepared.Template.Description,
        TemplateBody = prepared.Body,
        ProcessedTemplate = prepared.Processed.ToJsonString(),
        Parameters = prepared.Parameters,
        Tags = request.Tags ?? [],
        Capabilities = request.Capabilities,
        NotificationArns = request.NotificationArns,
        RoleArn = request.RoleArn,
        DisableRollback = request.DisableRollback,
        TerminationProtection = request.TerminationProtection,
        Imports = prepared.Imports,
    };

    private static async Task UpdateStackAsync(Dictionary<string, string> form, StackEngine engine, StringBuilder result, CancellationToken cancellationToken)
    {
        var request = Request(form);
        var stack = Stack(engine, request.StackName);
        if (!Stable(stack.Status) || engine.IsBusy(stack.StackId))
        {
            throw CloudFormationException.Validation($"Stack:{stack.StackId} is in {stack.Status} state and can not be updated.");
        }
        var body = await engine.TemplateBodyAsync(request, stack, cancellationToken);
        var prepared = engine.Prepare(body, stack.StackName, stack.StackId, request.Parameters, stack.Parameters, request.Capabilities, changeSet: false);
        var changes = engine.ComputeChanges(stack, prepared, engine.Store.Resources(stack.StackId));
        if (changes.Count == 0 && NothingElseChanged(stack, prepared, request))
        {
            throw CloudFormationException.Validation("No updates are to be performed.");
        }
        if (!engine.Start(stack.StackId, run => engine.UpdateRunAsync(run, prepared, null, request)))
        {
            throw CloudFormationException.Validation($"Stack:{stack.StackId} is in {stack.Status} state and can not be updated.");
        }
        await engine.WaitBrieflyAsync(stack.StackId, cancellationToken);
        Element(result, "StackId", stack.StackId);
    }

    private static bool NothingElseChanged(StackRecord stack, PreparedTemplate prepared, StackRequest request) =>
        stack.ProcessedTemplate == prepared.Processed.ToJsonString()
        && stack.Parameters.Select(static p => (p.Key, p.Value)).SequenceEqual(prepared.Parameters.Select(static p => (p.Key, p.Value)))
        && (request.Tags is null || stack.Tags.SequenceEqual(request.Tags));

    private static async Task DeleteStackAsync(Dictionary<string, string> form, StackEngine engine, CancellationToken cancellationToken)
    {
        var name = Required(form, "StackName");
        var stack = engine.Store.FindStack(name);
        if (stack is null || stack.Status == "DELETE_COMPLETE")
        {
            return; // CloudFormation answers success for a stack that is not there.
        }
        if (stack.TerminationProtection)
        {
            throw CloudFormationException.Validation($"Stack [{stack.StackName}] cannot be deleted while TerminationProtection is enabled");
        }
        if (stack.Status == "REVIEW_IN_PROGRESS" && engine.Store.Resources(stack.StackId).Count == 0)
        {
            // Never created: it goes with its change sets.
            engine.Store.DeleteChangeSets(stack.StackId);
            engine.Store.SaveStack(stack with { Status = "DELETE_COMPLETE", DeletedAt = engine.Now });
            return;
        }
        if (stack.Status == "DELETE_IN_PROGRESS" || !engine.Start(stack.StackId, engine.DeleteRunAsync))
        {
            if (stack.Status == "DELETE_IN_PROGRESS")
            {
                return;
            }
            throw CloudFormationException.Validation($"Stack [{stack.StackName}] is in {stack.Status} state and can not be deleted now; wait for the operation to end.");
        }
        await engine.WaitBrieflyAsync(stack.StackId, cancellationToken);
    }

    private static void DescribeStacks(Dictionary<string, string> form, StackEngine engine, StringBuilder result)
    {
        List<StackRecord> stacks;
        if (form.GetValueOrDefault("StackName") is { Length: > 0 } name)
        {
            stacks = [Stack(engine, name)];
        }
        else
        {
            stacks = engine.Store.AllStacks().Where(static s => s.DeletedAt is null).ToList();
        }
        var (page, next) = Page(stacks, form);
        result.Append("<Stacks>");
        foreach (var stack in page)
        {
            result.Append("<member>");
            Element(result, "StackId", stack.StackId);
            Element(result, "StackName", stack.StackName);
            OptionalElement(result, "ChangeSetId", stack.ChangeSetId);
            OptionalElement(result, "Description", stack.Description);
            WriteParameters(result, stack.Parameters);
            Element(result, "CreationTime", Time(stack.CreatedAt));
            if (stack.DeletedAt is { } deleted)
            {
                Element(result, "DeletionTime", Time(deleted));
            }
            if (stack.UpdatedAt is { } updated)
            {
                Element(result, "LastUpdatedTime", Time(updated));
            }
            result.Append("<RollbackConfiguration><RollbackTriggers/></RollbackConfiguration>");
            Element(result, "StackStatus", stack.Status);
            OptionalElement(result, "StackStatusReason", stack.StatusReason);
            Element(result, "DisableRollback", stack.DisableRollback ? "true" : "false");
            Members(result, "NotificationARNs", stack.NotificationArns);
            Members(result, "Capabilities", stack.Capabilities);
            if (stack.Outputs.Count > 0)
            {
                result.Append("<Outputs>");
                foreach (var output in stack.Outputs)
                {
                    result.Append("<member>");
                    Element(result, "OutputKey", output.Key);
                    Element(result, "OutputValue", output.Value);
                    OptionalElement(result, "Description", output.Description);
                    OptionalElement(result, "ExportName", output.ExportName);
                    result.Append("</member>");
                }
                result.Append("</Outputs>");
            }
            OptionalElement(result, "RoleARN", stack.RoleArn);
            WriteTags(result, stack.Tags);
            Element(result, "EnableTerminationProtection", stack.TerminationProtection ? "true" : "false");
            result.Append("<DriftInformation><StackDriftStatus>NOT_CHECKED</StackDriftStatus></DriftInformation>");
            result.Append("</member>");
        }
        result.Append("</Stacks>");
        OptionalElement(result, "NextToken", next);
    }

    private static void ListStacks(Dictionary<string, string> form, StackEngine engine, StringBuilder result)
    {
        var filter = Members(form, "StackStatusFilter").ToHashSet(StringComparer.Ordinal);
        var stacks = engine.Store.AllStacks().Where(s => filter.Count == 0 || filter.Contains(s.Status)).ToList();
        var (page, next) = Page(stacks, form);
        result.Append("<StackSummaries>");
        foreach (var stack in page)
        {
            result.Append("<member>");
            Element(result, "StackId", stack.StackId);
            Element(result, "StackName", stack.StackName);
            OptionalElement(result, "TemplateDescription", stack.Description);
            Element(result, "CreationTime", Time(stack.CreatedAt));
            if (stack.UpdatedAt is { } updated)
            {
                Element(result, "LastUpdatedTime", Time(updated));
            }
            if (stack.DeletedAt is { } deleted)
            {
                Element(result, "DeletionTime", Time(deleted));
            }
            Element(result, "StackStatus", stack.Status);
            OptionalElement(result, "StackStatusReason", stack.StatusReason);
            result.Append("<DriftInformation><StackDriftStatus>NOT_CHECKED</StackDriftStatus></DriftInformation>");
            result.Append("</member>");
        }
        result.Append("</StackSummaries>");
        OptionalElement(result, "NextToken", next);
    }

    private static void DescribeStackEvents(Dictionary<string, string> form, StackEngine engine, StringBuilder result)
    {
        var name = Required(form, "StackName");
        var stack = engine.Store.FindStack(name) ?? throw CloudFormationException.Validation($"Stack [{name}] does not exist");
        // The token is the number of the last event listed (events come newest first, and new ones at the head).
        long? before = form.GetValueOrDefault("NextToken") is { Length: > 0 } token
            ? token.StartsWith("e/", StringComparison.Ordinal) && long.TryParse(token.AsSpan(2), NumberStyles.None, CultureInfo.InvariantCulture, out var seq)
                ? seq : throw CloudFormationException.Validation("Invalid NextToken")
            : null;
        var events = engine.Store.Events(stack.StackId, before, PageSize + 1);
        result.Append("<StackEvents>");
        foreach (var (_, e) in events.Take(PageSize))
        {
            result.Append("<member>");
            Element(result, "StackId", e.StackId);
            Element(result, "EventId", e.EventId);
            Element(result, "StackName", e.StackName);
            Element(result, "LogicalResourceId", e.LogicalResourceId);
            OptionalElement(result, "PhysicalResourceId", e.PhysicalResourceId);
            Element(result, "ResourceType", e.ResourceType);
            Element(result, "Timestamp", Time(e.Timestamp));
            Element(result, "ResourceStatus", e.ResourceStatus);
            OptionalElement(result, "ResourceStatusReason", e.ResourceStatusReason);
            OptionalElement(result, "ResourceProperties", e.ResourceProperties);
            OptionalElement(result, "ClientRequestToken", e.ClientRequestToken);
            result.Append("</member>");
        }
        result.Append("</StackEvents>");
        if (events.Count > PageSize)
        {
            Element(result, "NextToken", string.Create(CultureInfo.InvariantCulture, $"e/{events[PageSize - 1].Seq}"));
        }
    }

    private static void DescribeStackResource(Dictionary<string, string> form, StackEngine engine, StringBuilder result)
    {
        var stack = Stack(engine, Required(form, "StackName"));
        var logicalId = Required(form, "LogicalResourceId");
        var resource = engine.Store.Resources(stack.StackId).FirstOrDefault(r => r.LogicalId == logicalId)
            ?? throw CloudFormationException.Validation($"Resource {logicalId} does not exist for stack {stack.StackName}");
        result.Append("<StackResourceDetail>");
        Element(result, "StackName", stack.StackName);
        Element(result, "StackId", stack.StackId);
        Element(result, "LogicalResourceId", resource.LogicalId);
        OptionalElement(result, "PhysicalResourceId", resource.PhysicalId);
        Element(result, "ResourceType", resource.Type);
        Element(result, "LastUpdatedTimestamp", Time(resource.UpdatedAt));
        Element(result, "ResourceStatus", resource.Status);
        OptionalElement(result, "ResourceStatusReason", resource.StatusReason);
        OptionalElement(result, "Metadata", resource.Metadata);
        result.Append("<DriftInformation><StackResourceDriftStatus>NOT_CHECKED</StackResourceDriftStatus></DriftInformation>");
        result.Append("</StackResourceDetail>");
    }

    private static void DescribeStackResources(Dictionary<string, string> form, StackEngine engine, StringBuilder result)
    {
        StackRecord stack;
        List<ResourceRecord> resources;
        if (form.GetValueOrDefault("StackName") is { Length: > 0 } name)
        {
            stack = Stack(engine, name);
            resources = engine.Store.Resources(stack.StackId);
        }
        else if (form.GetValueOrDefault("PhysicalResourceId") is { Length: > 0 } physical)
        {
            (stack, resources) = engine.Store.AllStacks().Where(static s => s.DeletedAt is null)
                .Select(s => (s, engine.Store.Resources(s.StackId))).FirstOrDefault(p => p.Item2.Any(r => r.PhysicalId == physical));
            if (stack is null)
            {
                throw CloudFormationException.Validation($"Stack for {physical} does not exist");
            }
            resources = resources.Where(r => r.PhysicalId == physical).ToList();
        }
        else
        {
            throw CloudFormationException.Validation("Either StackName or PhysicalResourceId must be specified.");
        }
        if (form.GetValueOrDefault("LogicalResourceId") is { Length: > 0 } logicalId)
        {
            resources = resources.Where(r => r.LogicalId == logicalId).ToList();
        }
        result.Append("<StackResources>");
        foreach (var resource in resources)
        {
            result.Append("<member>");
            Element(result, "StackName", stack.StackName);
            Element(result, "StackId", stack.StackId);
            Element(result, "LogicalResourceId", resource.LogicalId);
            OptionalElement(result, "PhysicalResourceId", resource.PhysicalId);
            Element(result, "ResourceType", resource.Type);
            Element(result, "Timestamp", Time(resource.UpdatedAt));
            Element(result, "ResourceStatus", resource.Status);
            OptionalElement(result, "ResourceStatusReason", resource.StatusReason);
            result.Append("<DriftInformation><StackResourceDriftStatus>NOT_CHECKED</StackResourceDriftStatus></DriftInformation>");
            result.Append("</member>");
        }
        result.Append("</StackResources>");
    }

    private static void ListStackResources(Dictionary<string, string> form, StackEngine engine, StringBuilder result)
    {
        var stack = Stack(engine, Required(form, "StackName"));
        var (page, next) = Page(engine.Store.Resources(stack.StackId), form);
        result.Append("<StackResourceSummaries>");
        foreach (var resource in page)
        {
            result.Append("<member>");
            Element(result, "LogicalResourceId", resource.LogicalId);
            OptionalElement(result, "PhysicalResourceId", resource.PhysicalId);
            Element(result, "ResourceType", resource.Type);
            Element(result, "LastUpdatedTimestamp", Time(resource.UpdatedAt));
            Element(result, "ResourceStatus", resource.Status);
            OptionalElement(result, "ResourceStatusReason", resource.StatusReason);
            result.Append("<DriftInformation><StackResourceDriftStatus>NOT_CHECKED</StackResourceDriftStatus></DriftInformation>");
            result.Append("</member>");
        }
        result.Append("</StackResourceSummaries>");
        OptionalElement(result, "NextToken", next);
    }

    // ---- templates ------------------------------------------------------------------------------------------------------

    private static void GetTemplate(Dictionary<string, string> form, StackEngine engine, StringBuilder result)
    {
        var stack = Stack(engine, form.GetValueOrDefault("StackName") is { Length: > 0 } name ? name
            : throw CloudFormationException.Validation("StackName must be specified"));
        string original = stack.TemplateBody, processed = stack.ProcessedTemplate;
        if (form.GetValueOrDefault("ChangeSetName") is { Length: > 0 } changeSetName)
        {
            var changeSet = FindChangeSet(engine, changeSetName, stack.StackName);
            (original, processed) = (changeSet.TemplateBody, changeSet.ProcessedTemplate);
        }
        var stage = form.GetValueOrDefault("TemplateStage") ?? "Original";
        if (stage is not ("Original" or "Processed"))
        {
            throw CloudFormationException.Validation($"1 validation error detected: Value '{stage}' at 'templateStage' failed to satisfy constraint: Member must satisfy enum value set: [Original, Processed]");
        }
        Element(result, "TemplateBody", stage == "Original" ? original : PrettyJson(processed));
        Members(result, "StagesAvailable", ["Original", "Processed"]);
    }

    private static string PrettyJson(string json) => JsonNode.Parse(json)!.ToJsonString(new System.Text.Json.JsonSerializerOptions { WriteIndented = true });

    private static async Task<(string Body, JsonObject Root)> TemplateOfAsync(Dictionary<string, string> form, StackEngine engine, CancellationToken cancellationToken)
    {
        string body;
        if (form.GetValueOrDefault("StackName") is { Length: > 0 } name && form.GetValueOrDefault("TemplateBody") is null && form.GetValueOrDefault("TemplateURL") is null)
        {
            body = Stack(engine, name).TemplateBody;
        }
        else
        {
            body = await engine.TemplateBodyAsync(new StackRequest
            {
                StackName = "template",
                TemplateBody = form.GetValueOrDefault("TemplateBody"),
                TemplateUrl = form.GetValueOrDefault("TemplateURL"),
            }, null, cancellationToken);
        }
        return (body, TemplateReader.Read(body));
    }

    private static (List<string> Capabilities, string? Reason, List<string> Transforms) Requirements(JsonObject root)
    {
        var transforms = root["Transform"] switch
        {
            JsonValue v => [Intrinsics.Stringify(v)],
            JsonArray a => a.Select(Intrinsics.Stringify).ToList(),
            _ => new List<string>(),
        };
        var resources = (root["Resources"] as JsonObject ?? []).Select(static r => (r.Key, Type: Intrinsics.Stringify((r.Value as JsonObject)?["Type"]), Properties: (r.Value as JsonObject)?["Properties"] as JsonObject)).ToList();
        var capabilities = new List<string>();
        string? reason = null;
        var iam = resources.Where(static r => r.Type.StartsWith("AWS::IAM::", StringComparison.Ordinal) || r.Type == "AWS::Serverless::Function").ToList();
        if (iam.Any(static r => r.Properties?.ContainsKey("RoleName") == true || r.Properties?.ContainsKey("ManagedPolicyName") == true))
        {
            capabilities.Add("CAPABILITY_NAMED_IAM");
            reason = "The following resource(s) require capabilities: [" + string.Join(", ", iam.Select(static r => r.Type).Distinct()) + "]";
        }
        else if (iam.Count > 0)
        {
            capabilities.Add("CAPABILITY_IAM");
            reason = "The following resource(s) require capabilities: [" + string.Join(", ", iam.Select(static r => r.Type).Distinct()) + "]";
        }
        if (transforms.Count > 0)
        {
            capabilities.Add("CAPABILITY_AUTO_EXPAND");
        }
        return (capabilities, reason, transforms);
    }

    private static async Task ValidateTemplateAsync(Dictionary<string, string> form, StackEngine engine, StringBuilder result, CancellationToken cancellationToken)
    {
        var (_, root) = await TemplateOfAsync(form, engine, cancellationToken);
        if (root["Transform"] is null)
        {
            StackTemplate.Parse(root);
        }
        else if (root["Resources"] is not JsonObject { Count: > 0 })
        {
            throw CloudFormationException.Validation("Template format error: At least one Resources member must be defined.");
        }
        result.Append("<Parameters>");
        foreach (var (key, node) in root["Parameters"] as JsonObject ?? [])
        {
            var declaration = node as JsonObject ?? [];
            result.Append("<member>");
            Element(result, "ParameterKey", key);
            if (declaration["Default"] is { } d)
            {
                Element(result, "DefaultValue", Intrinsics.Stringify(d));
            }
            Element(result, "NoEcho", Intrinsics.Stringify(declaration["NoEcho"]).Equals("true", StringComparison.OrdinalIgnoreCase) ? "true" : "false");
            if (declaration["Description"] is { } description)
            {
                Element(result, "Description", Intrinsics.Stringify(description));
            }
            result.Append("</member>");
        }
        result.Append("</Parameters>");
        if (root["Description"] is { } templateDescription)
        {
            Element(result, "Description", Intrinsics.Stringify(templateDescription));
        }
        var (capabilities, reason, transforms) = Requirements(root);
        Members(result, "Capabilities", capabilities);
        OptionalElement(result, "CapabilitiesReason", reason);
        Members(result, "DeclaredTransforms", transforms);
    }

    private static async Task GetTemplateSummaryAsync(Dictionary<string, string> form, StackEngine engine, StringBuilder result, CancellationToken cancellationToken)
    {
        var (_, root) = await TemplateOfAsync(form, engine, cancellationToken);
        result.Append("<Parameters>");
        foreach (var (key, node) in root["Parameters"] as JsonObject ?? [])
        {
            var declaration = node as JsonObject ?? [];
            result.Append("<member>");
            Element(result, "ParameterKey", key);
            if (declaration["Default"] is { } d)
            {
                Element(result, "DefaultValue", Intrinsics.Stringify(d));
            }
            Element(result, "ParameterType", Intrinsics.Stringify(declaration["Type"]));
            Element(result, "NoEcho", Intrinsics.Stringify(declaration["NoEcho"]).Equals("true", StringComparison.OrdinalIgnoreCase) ? "true" : "false");
            if (declaration["Description"] is { } description)
            {
                Element(result, "Description", Intrinsics.Stringify(description));
            }
            result.Append("<ParameterConstraints>");
            if (declaration["AllowedValues"] is JsonArray allowed)
            {
                Members(result, "AllowedValues", allowed.Select(Intrinsics.Stringify).ToList());
            }
            result.Append("</ParameterConstraints>");
            result.Append("</member>");
        }
        result.Append("</Parameters>");
        if (root["Description"] is { } templateDescription)
        {
            Element(result, "Description", Intrinsics.Stringify(templateDescription));
        }
        var (capabilities, reason, transforms) = Requirements(root);
        Members(result, "Capabilities", capabilities);
        OptionalElement(result, "CapabilitiesReason", reason);
        Members(result, "ResourceTypes", (root["Resources"] as JsonObject ?? []).Select(static r => Intrinsics.Stringify((r.Value as JsonObject)?["Type"])).Distinct().ToList());
        if (root["AWSTemplateFormatVersion"] is { } version)
        {
            Element(result, "Version", Intrinsics.Stringify(version));
        }
        if (root["Metadata"] is { } metadata)
        {
            Element(result, "Metadata", metadata.ToJsonString());
        }
        Members(result, "DeclaredTransforms", transforms);
    }

    // ---- change sets ----------------------------------------------------------------------------------------------------

    private static ChangeSetRecord FindChangeSet(StackEngine engine, string nameOrId, string? stackName)
    {
        if (nameOrId.StartsWith("arn:", StringComparison.Ordinal))
        {
            return engine.Store.FindChangeSet(nameOrId) ?? throw new CloudFormationException("ChangeSetNotFound", $"ChangeSet [{nameOrId}] does not exist", 404);
        }
        if (stackName is null)
        {
            throw CloudFormationException.Validation("StackName must be specified if ChangeSetName is not specified as an ARN.");
        }
        var stack = engine.Store.FindStack(stackName) ?? throw new CloudFormationException("ChangeSetNotFound", $"ChangeSet [{nameOrId}] does not exist", 404);
        return engine.Store.FindChangeSet(stack.StackId, nameOrId) ?? throw new CloudFormationException("ChangeSetNotFound", $"ChangeSet [{nameOrId}] does not exist", 404);
    }

    private static async Task CreateChangeSetAsync(Dictionary<string, string> form, StackEngine engine, StringBuilder result, CancellationToken cancellationToken)
    {
        var request = Request(form);
        CheckStackName(request.StackName);
        var name = Required(form, "ChangeSetName");
        if (!ChangeSetNamePattern().IsMatch(name))
        {
            throw CloudFormationException.Validation($"1 validation error detected: Value '{name}' at 'changeSetName' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z][-a-zA-Z0-9]*");
        }
        var type = form.GetValueOrDefault("ChangeSetType") ?? "UPDATE";
        if (type is not ("CREATE" or "UPDATE"))
        {
            throw CloudFormationException.Validation($"ChangeSetType {type} is not supported: Lamina creates CREATE and UPDATE change sets");
        }
        var existing = engine.Store.FindStack(request.StackName);
        if (type == "CREATE" && existing is not null && existing.Status != "REVIEW_IN_PROGRESS")
        {
            throw CloudFormationException.Validation($"Stack [{existing.StackName}] already exists and cannot be created again with the changeSet [{name}].");
        }
        if (type == "UPDATE")
        {
            if (existing is null || existing.Status == "REVIEW_IN_PROGRESS")
            {
                throw CloudFormationException.Validation($"Stack [{request.StackName}] does not exist");
            }
            if (!Stable(existing.Status) || engine.IsBusy(existing.StackId))
            {
                throw CloudFormationException.Validation($"Stack:{existing.StackId} is in {existing.Status} state and can not be updated.");
            }
        }
        var stackId = existing?.StackId ?? engine.NewStackId(request.StackName);
        // An executed change set is history, and its name may be used again: the AWS CLI names its change sets after
        // the second ("awscli-cloudformation-package-deploy-<epoch>"), and two deploys here can finish within one.
        var executedSameName = existing is null ? null : engine.Store.FindChangeSet(existing.StackId, name);
        if (executedSameName is not null && executedSameName.ExecutionStatus is not ("EXECUTE_COMPLETE" or "EXECUTE_FAILED"))
        {
            throw new CloudFormationException("AlreadyExistsException", $"ChangeSet {name} already exists");
        }
        var body = await engine.TemplateBodyAsync(request, existing, cancellationToken);
        // Syntax errors are the request's; a template that reads but cannot be deployed makes a FAILED change set.
        TemplateReader.Read(body);
        var changeSetId = engine.NewChangeSetId(name);
        var record = new ChangeSetRecord
        {
            ChangeSetId = changeSetId,
            ChangeSetName = name,
            StackId = stackId,
            StackName = request.StackName,
            ChangeSetType = type,
            Status = "CREATE_COMPLETE",
            ExecutionStatus = "AVAILABLE",
            CreatedAt = engine.Now,
            Description = form.GetValueOrDefault("Description"),
            TemplateBody = body,
            Tags = request.Tags ?? existing?.Tags ?? [],
            Capabilities = request.Capabilities,
            NotificationArns = request.NotificationArns,
            RoleArn = request.RoleArn,
        };
        try
        {
            var prepared = engine.Prepare(body, request.StackName, stackId, request.Parameters, existing?.Parameters, request.Capabilities, changeSet: true);
            var stack = existing ?? NewStack(engine, request, stackId, prepared, "REVIEW_IN_PROGRESS") with { TemplateBody = "", ProcessedTemplate = "{}", Parameters = [] };
            var changes = engine.ComputeChanges(stack, prepared, existing is null ? [] : engine.Store.Resources(stackId));
            record = record with { ProcessedTemplate = prepared.Processed.ToJsonString(), Parameters = prepared.Parameters, Changes = changes.ToJsonString() };
            if (existing is not null && changes.Count == 0 && NothingElseChanged(existing, prepared, request))
            {
                record = record with
                {
                    Status = "FAILED",
                    ExecutionStatus = "UNAVAILABLE",
                    StatusReason = "The submitted information didn't contain changes. Submit different information to create a change set.",
                };
            }
        }
        catch (CloudFormationException e) when (e.Code == "InsufficientCapabilitiesException")
        {
            throw;
        }
        catch (CloudFormationException e)
        {
            record = record with { Status = "FAILED", ExecutionStatus = "UNAVAILABLE", StatusReason = e.Message };
        }
        if (existing is null)
        {
            var stack = new StackRecord
            {
                StackId = stackId,
                StackName = request.StackName,
                Status = "REVIEW_IN_PROGRESS",
                StatusReason = "User Initiated",
                CreatedAt = engine.Now,
                Tags = request.Tags ?? [],
            };
            try
            {
                engine.Store.SaveStack(stack);
            }
            catch (Microsoft.Data.Sqlite.SqliteException e) when (e.SqliteErrorCode == 19)
            {
                throw new CloudFormationException("AlreadyExistsException", $"Stack [{request.StackName}] already exists");
            }
            engine.Store.AddEvent(new StackEventRecord(Guid.NewGuid().ToString(), stackId, request.StackName, request.StackName, stackId, "AWS::CloudFormation::Stack",
                engine.Now, "REVIEW_IN_PROGRESS", "User Initiated", null, request.ClientRequestToken));
        }
        if (executedSameName is not null)
        {
            engine.Store.DeleteChangeSet(executedSameName.ChangeSetId);
        }
        engine.Store.SaveChangeSet(record);
        Element(result, "Id", changeSetId);
        Element(result, "StackId", stackId);
    }

    private static void DescribeChangeSet(Dictionary<string, string> form, StackEngine engine, StringBuilder result)
    {
        var changeSet = FindChangeSet(engine, Required(form, "ChangeSetName"), form.GetValueOrDefault("StackName"));
        Element(result, "ChangeSetName", changeSet.ChangeSetName);
        Element(result, "ChangeSetId", changeSet.ChangeSetId);
        Element(result, "StackId", changeSet.StackId);
        Element(result, "StackName", changeSet.StackName);
        OptionalElement(result, "Description", changeSet.Description);
        WriteParameters(result, changeSet.Parameters);
        Element(result, "CreationTime", Time(changeSet.CreatedAt));
        Element(result, "ExecutionStatus", changeSet.ExecutionStatus);
        Element(result, "Status", changeSet.Status);
        OptionalElement(result, "StatusReason", changeSet.StatusReason);
        Members(result, "NotificationARNs", changeSet.NotificationArns);
        result.Append("<RollbackConfiguration><RollbackTriggers/></RollbackConfiguration>");
        Members(result, "Capabilities", changeSet.Capabilities);
        WriteTags(result, changeSet.Tags);
        result.Append("<Changes>");
        foreach (var change in JsonNode.Parse(changeSet.Changes) as JsonArray ?? [])
        {
            result.Append("<member>");
            WriteJsonAsXml(result, change as JsonObject ?? []);
            result.Append("</member>");
        }
        result.Append("</Changes>");
        Element(result, "IncludeNestedStacks", "false");
    }

    /// <summary>A JSON object of the Changes list as Query-protocol XML: lists become member elements.</summary>
    private static void WriteJsonAsXml(StringBuilder xml, JsonObject node)
    {
        foreach (var (name, value) in node)
        {
            switch (value)
            {
                case JsonObject child:
                    xml.Append('<').Append(name).Append('>');
                    WriteJsonAsXml(xml, child);
                    xml.Append("</").Append(name).Append('>');
                    break;
                case JsonArray list:
                    xml.Append('<').Append(name).Append('>');
                    foreach (var item in list)
                    {
                        xml.Append("<member>");
                        if (item is JsonObject o)
                        {
                            WriteJsonAsXml(xml, o);
                        }
                        else
                        {
                            xml.Append(QueryProtocol.Escape(Intrinsics.Stringify(item)));
                        }
                        xml.Append("</member>");
                    }
                    xml.Append("</").Append(name).Append('>');
                    break;
                default:
                    Element(xml, name, Intrinsics.Stringify(value));
                    break;
            }
        }
    }

    private static async Task ExecuteChangeSetAsync(Dictionary<string, string> form, StackEngine engine, CancellationToken cancellationToken)
    {
        var changeSet = FindChangeSet(engine, Required(form, "ChangeSetName"), form.GetValueOrDefault("StackName"));
        if (changeSet.ExecutionStatus != "AVAILABLE")
        {
            throw new CloudFormationException("InvalidChangeSetStatus",
                $"ChangeSet [{changeSet.ChangeSetId}] cannot be executed in its current execution status of [{changeSet.ExecutionStatus}]");
        }
        var stack = Stack(engine, changeSet.StackId);
        var request = new StackRequest
        {
            StackName = stack.StackName,
            Capabilities = changeSet.Capabilities,
            Tags = changeSet.Tags,
            NotificationArns = changeSet.NotificationArns,
            RoleArn = changeSet.RoleArn,
            DisableRollback = form.GetValueOrDefault("DisableRollback") == "true",
        };
        if (changeSet.ChangeSetType == "CREATE")
        {
            if (stack.Status != "REVIEW_IN_PROGRESS")
            {
                throw new CloudFormationException("InvalidChangeSetStatus", $"ChangeSet [{changeSet.ChangeSetId}] cannot be executed: the stack is {stack.Status}");
            }
            var prepared = engine.Prepare(changeSet.TemplateBody, stack.StackName, stack.StackId, changeSet.Parameters.Select(static p => new ParameterInput(p.Key, p.Value, false)).ToList(),
                null, changeSet.Capabilities, changeSet: true);
            engine.Store.SaveStack(NewStack(engine, request, stack.StackId, prepared, "REVIEW_IN_PROGRESS") with { CreatedAt = stack.CreatedAt, ChangeSetId = changeSet.ChangeSetId });
            engine.Store.SaveChangeSet(changeSet with { ExecutionStatus = "EXECUTE_IN_PROGRESS" });
            if (!engine.Start(stack.StackId, async run =>
                {
                    await engine.CreateRunAsync(run);
                    Executed(engine, changeSet, run.Stack.Status);
                }))
            {
                throw CloudFormationException.Validation($"Stack:{stack.StackId} is busy");
            }
        }
        else
        {
            if (!Stable(stack.Status))
            {
                throw new CloudFormationException("InvalidChangeSetStatus", $"ChangeSet [{changeSet.ChangeSetId}] cannot be executed: the stack is {stack.Status}");
            }
            var prepared = engine.Prepare(changeSet.TemplateBody, stack.StackName, stack.StackId, changeSet.Parameters.Select(static p => new ParameterInput(p.Key, p.Value, false)).ToList(),
                stack.Parameters, changeSet.Capabilities, changeSet: true);
            engine.Store.SaveChangeSet(changeSet with { ExecutionStatus = "EXECUTE_IN_PROGRESS" });
            if (!engine.Start(stack.StackId, async run =>
                {
                    await engine.UpdateRunAsync(run, prepared, changeSet, request);
                    Executed(engine, changeSet, run.Stack.Status);
                }))
            {
                engine.Store.SaveChangeSet(changeSet);
                throw CloudFormationException.Validation($"Stack:{stack.StackId} is in {stack.Status} state and can not be updated.");
            }
        }
        await engine.WaitBrieflyAsync(stack.StackId, cancellationToken);
    }

    /// <summary>After execution the stack's other change sets are gone, as on CloudFormation; the executed one is kept as done.</summary>
    private static void Executed(StackEngine engine, ChangeSetRecord changeSet, string status)
    {
        foreach (var other in engine.Store.ChangeSets(changeSet.StackId).Where(c => c.ChangeSetId != changeSet.ChangeSetId))
        {
            engine.Store.DeleteChangeSet(other.ChangeSetId);
        }
        engine.Store.SaveChangeSet(changeSet with
        {
            ExecutionStatus = status is "CREATE_COMPLETE" or "UPDATE_COMPLETE" ? "EXECUTE_COMPLETE" : "EXECUTE_FAILED",
        });
    }

    private static void DeleteChangeSet(Dictionary<string, string> form, StackEngine engine)
    {
        var changeSet = FindChangeSet(engine, Required(form, "ChangeSetName"), form.GetValueOrDefault("StackName"));
        if (changeSet.ExecutionStatus == "EXECUTE_IN_PROGRESS")
        {
            throw new CloudFormationException("InvalidChangeSetStatus", $"Cannot delete ChangeSet in status {changeSet.ExecutionStatus}");
        }
        engine.Store.DeleteChangeSet(changeSet.ChangeSetId);
        if (engine.Store.FindStack(changeSet.StackId) is { Status: "REVIEW_IN_PROGRESS" } stack && engine.Store.ChangeSets(stack.StackId).Count == 0)
        {
            // A stack that only existed for its change sets goes with the last of them.
            engine.Store.SaveStack(stack with { Status = "DELETE_COMPLETE", DeletedAt = engine.Now });
        }
    }

    private static void ListChangeSets(Dictionary<string, string> form, StackEngine engine, StringBuilder result)
    {
        var stack = Stack(engine, Required(form, "StackName"));
        result.Append("<Summaries>");
        foreach (var changeSet in engine.Store.ChangeSets(stack.StackId))
        {
            result.Append("<member>");
            Element(result, "StackId", changeSet.StackId);
            Element(result, "StackName", changeSet.StackName);
            Element(result, "ChangeSetId", changeSet.ChangeSetId);
            Element(result, "ChangeSetName", changeSet.ChangeSetName);
            Element(result, "ExecutionStatus", changeSet.ExecutionStatus);
            Element(result, "Status", changeSet.Status);
            OptionalElement(result, "StatusReason", changeSet.StatusReason);
            Element(result, "CreationTime", Time(changeSet.CreatedAt));
            OptionalElement(result, "Description", changeSet.Description);
            Element(result, "IncludeNestedStacks", "false");
            result.Append("</member>");
        }
        result.Append("</Summaries>");
    }

    // ---- exports --------------------------------------------------------------------------------------------------------

    private static void ListExports(Dictionary<string, string> form, StackEngine engine, StringBuilder result)
    {
        var (page, next) = Page(engine.Store.Exports(), form);
        result.Append("<Exports>");
        foreach (var (name, stackId, value) in page)
        {
            result.Append("<member>");
            Element(result, "ExportingStackId", stackId);
            Element(result, "Name", name);
            Element(result, "Value", value);
            result.Append("</member>");
        }
        result.Append("</Exports>");
        OptionalElement(result, "NextToken", next);
    }

    private static void ListImports(Dictionary<string, string> form, StackEngine engine, StringBuilder result)
    {
        var name = Required(form, "ExportName");
        if (engine.Store.Exports().All(e => e.Name != name))
        {
            throw CloudFormationException.Validation($"Export '{name}' does not exist.");
        }
        Members(result, "Imports", engine.Store.AllStacks().Where(s => s.DeletedAt is null && s.Imports.Contains(name)).Select(static s => s.StackName).ToList());
    }

    private static void UpdateTerminationProtection(Dictionary<string, string> form, StackEngine engine, StringBuilder result)
    {
        var stack = Stack(engine, Required(form, "StackName"));
        var enabled = Required(form, "EnableTerminationProtection") == "true";
        engine.Store.SaveStack(stack with { TerminationProtection = enabled });
        Element(result, "StackId", stack.StackId);
    }

    // ---- XML ------------------------------------------------------------------------------------------------------------

    private static void Element(StringBuilder xml, string name, string? value) => QueryProtocol.Element(xml, name, value);

    /// <summary>The element, or nothing when there is no value (CloudFormation leaves absent fields out).</summary>
    private static void OptionalElement(StringBuilder xml, string name, string? value)
    {
        if (value is not null)
        {
            Element(xml, name, value);
        }
    }

    private static void Members(StringBuilder xml, string name, IReadOnlyList<string> values)
    {
        xml.Append('<').Append(name).Append('>');
        foreach (var value in values)
        {
            Element(xml, "member", value);
        }
        xml.Append("</").Append(name).Append('>');
    }

    private static void WriteParameters(StringBuilder xml, List<StackParameter> parameters)
    {
        if (parameters.Count == 0)
        {
            return;
        }
        xml.Append("<Parameters>");
        foreach (var parameter in parameters)
        {
            xml.Append("<member>");
            Element(xml, "ParameterKey", parameter.Key);
            Element(xml, "ParameterValue", parameter.NoEcho ? "****" : parameter.Value);
            xml.Append("</member>");
        }
        xml.Append("</Parameters>");
    }

    private static void WriteTags(StringBuilder xml, List<StackTag> tags)
    {
        xml.Append("<Tags>");
        foreach (var tag in tags)
        {
            xml.Append("<member>");
            Element(xml, "Key", tag.Key);
            Element(xml, "Value", tag.Value);
            xml.Append("</member>");
        }
        xml.Append("</Tags>");
    }

    private static string Time(DateTimeOffset time) => time.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss.fff'Z'", CultureInfo.InvariantCulture);

    private static int Token(Dictionary<string, string> form) =>
        form.GetValueOrDefault("NextToken") is { Length: > 0 } token
            ? int.TryParse(token, NumberStyles.None, CultureInfo.InvariantCulture, out var skip) ? skip : throw CloudFormationException.Validation("Invalid NextToken")
            : 0;

    private static (List<T> Page, string? Next) Page<T>(List<T> items, Dictionary<string, string> form)
    {
        var skip = Token(form);
        var page = items.Skip(skip).Take(PageSize).ToList();
        return (page, skip + PageSize < items.Count ? (skip + PageSize).ToString(CultureInfo.InvariantCulture) : null);
    }

    [System.Text.RegularExpressions.GeneratedRegex("^[a-zA-Z][-a-zA-Z0-9]{0,127}$")]
    private static partial System.Text.RegularExpressions.Regex StackNamePattern();

    [System.Text.RegularExpressions.GeneratedRegex("^[a-zA-Z][-a-zA-Z0-9]{0,127}$")]
    private static partial System.Text.RegularExpressions.Regex ChangeSetNamePattern();
}
