using System.Text.Json;
using Lamina.Server.DynamoDb;
using Item = System.Collections.Generic.Dictionary<string, Lamina.Server.DynamoDb.AttributeValue>;

namespace Lamina.Tests.DynamoDb;

/// <summary>The expression languages: what parses, DynamoDB's messages for what does not, and evaluation.</summary>
public sealed class ExpressionTests
{
    private static Item ItemOf(string json) => AttributeValue.ParseMap(JsonDocument.Parse(json).RootElement);

    private static ExpressionContext Context(string? names = null, string? values = null) => new(
        names is null ? null : JsonSerializer.Deserialize<Dictionary<string, string>>(names),
        values is null ? null : ItemOf(values));

    private static readonly Item Sample = ItemOf("""
        {"id":{"S":"a1"},"n":{"N":"5"},"s":{"S":"hello"},"tags":{"SS":["x","y"]},"nums":{"NS":["1","2"]},
         "m":{"M":{"k":{"S":"v"},"deep":{"M":{"z":{"N":"1"}}}}},"l":{"L":[{"N":"10"},{"S":"two"},{"M":{"q":{"BOOL":true}}}]},
         "b":{"B":"AAEC"},"nul":{"NULL":true},"flag":{"BOOL":false}}
        """);

    private static bool Eval(string condition, string? values = null, string? names = null)
    {
        var context = Context(names, values);
        var parsed = ExpressionParser.ParseCondition(condition, "ConditionExpression", context);
        context.CheckAllUsed();
        return ExpressionEvaluator.Matches(parsed, Sample);
    }

    [Theory]
    [InlineData("n = :five", true)]
    [InlineData("n <> :five", false)]
    [InlineData("n < :six AND n >= :five", true)]
    [InlineData("n > :six OR s = :hello", true)]
    [InlineData("NOT n = :five", false)]
    [InlineData("n BETWEEN :five AND :six", true)]
    [InlineData("n IN (:six, :five)", true)]
    [InlineData("attribute_exists(m.deep.z)", true)]
    [InlineData("attribute_not_exists(absent)", true)]
    [InlineData("attribute_exists(l[5])", false)]
    [InlineData("attribute_type(tags, :ss)", true)]
    [InlineData("begins_with(s, :he)", true)]
    [InlineData("contains(s, :ell)", true)]
    [InlineData("contains(tags, :x)", true)]
    [InlineData("contains(l, :ten)", true)]
    [InlineData("size(tags) = :two", true)]
    [InlineData("size(l) > :two", true)]
    [InlineData("size(s) = :five", true)]
    [InlineData("l[2].q = :true", true)]
    [InlineData("m.k = :v", true)]
    [InlineData("absent <> :five", true)]
    [InlineData("absent = :five", false)]
    [InlineData("s < :five", false)]
    [InlineData("(n = :five) AND ((s = :hello))", true)]
    [InlineData("NOT (n = :six OR n = :five)", false)]
    [InlineData("n = :six OR n = :five AND s = :he", false)]
    [InlineData("n = :five OR n = :six AND s = :he", true)]
    public void Condition_Evaluates(string condition, bool expected)
    {
        const string values = """
            {":five":{"N":"5"},":six":{"N":"6.0"},":hello":{"S":"hello"},":ss":{"S":"SS"},":he":{"S":"he"},":ell":{"S":"ell"},
             ":x":{"S":"x"},":ten":{"N":"10"},":two":{"N":"2"},":true":{"BOOL":true},":v":{"S":"v"}}
            """;
        var all = JsonDocument.Parse(values).RootElement.EnumerateObject().Where(p => condition.Contains(p.Name + " ", StringComparison.Ordinal)
            || condition.Contains(p.Name + ")", StringComparison.Ordinal) || condition.Contains(p.Name + ",", StringComparison.Ordinal) || condition.EndsWith(p.Name, StringComparison.Ordinal));
        var used = "{" + string.Join(",", all.Select(static p => $"\"{p.Name}\":{p.Value.GetRawText()}")) + "}";
        Assert.Equal(expected, Eval(condition, used));
    }

    [Theory]
    [InlineData("SET a = ", "Invalid UpdateExpression: Syntax error; token: \"<EOF>\", near: \"= \"")]
    [InlineData("SET a = :v :w", "Invalid UpdateExpression: Syntax error; token: \":w\", near: \":v :w\"")]
    [InlineData("SET name = :v", "Invalid UpdateExpression: Attribute name is a reserved keyword; reserved keyword: name")]
    [InlineData("SET a = :nope", "Invalid UpdateExpression: An expression attribute value used in expression is not defined; attribute value: :nope")]
    [InlineData("SET #nope = :v", "Invalid UpdateExpression: An expression attribute name used in the document path is not defined; attribute name: #nope")]
    [InlineData("SET a = :v SET b = :v", "Invalid UpdateExpression: The \"SET\" section can only be used once in an update expression;")]
    [InlineData("SET a = :v, a.b = :v", "Invalid UpdateExpression: Two document paths overlap with each other; must remove or rewrite one of these paths; path one: [a], path two: [a, b]")]
    [InlineData("SET a.b = :v REMOVE a[0]", "Invalid UpdateExpression: Two document paths conflict with each other; must remove or rewrite one of these paths; path one: [a, b], path two: [a, [0]]")]
    [InlineData("SET a = foo(b)", "Invalid UpdateExpression: Invalid function name; function: foo")]
    [InlineData("ADD a :s", "Invalid UpdateExpression: Incorrect operand type for operator or function; operator: ADD, operand type: STRING")]
    [InlineData("DELETE a :n", "Invalid UpdateExpression: Incorrect operand type for operator or function; operator: DELETE, operand type: NUMBER")]
    [InlineData("SET a = if_not_exists(:v, b)", "Invalid UpdateExpression: Operator or function requires a document path; operator or function: if_not_exists")]
    [InlineData("SET a = :s + :n", "Invalid UpdateExpression: Incorrect operand type for operator or function; operator or function: +, operand type: S")]
    [InlineData("", "Invalid UpdateExpression: The expression can not be empty;")]
    [InlineData("SET a = $", "Invalid UpdateExpression: Syntax error; token: \"$\", near: \"= $\"")]
    public void Update_Invalid_HasDynamoDbMessage(string expression, string message)
    {
        var error = Assert.Throws<DynamoException>(() =>
            ExpressionParser.ParseUpdate(expression, Context("""{"#a":"a"}""", """{":v":{"S":"x"},":s":{"S":"x"},":n":{"N":"1"}}""")));
        Assert.Equal("ValidationException", error.Code);
        Assert.Equal(message, error.Message);
    }

    [Theory]
    [InlineData("a = :v AND", "Invalid ConditionExpression: Syntax error; token: \"<EOF>\", near: \"AND\"")]
    [InlineData("attribute_exists(:v)", "Invalid ConditionExpression: Operator or function requires a document path; operator or function: attribute_exists")]
    [InlineData("begins_with(a)", "Invalid ConditionExpression: Incorrect number of operands for operator or function; operator or function: begins_with, number of operands: 1")]
    [InlineData("size(a)", "Invalid ConditionExpression: The function is not allowed to be used this way in an expression; function: size")]
    [InlineData("attribute_exists(a) = :v", "Invalid ConditionExpression: The function is not allowed to be used this way in an expression; function: attribute_exists")]
    [InlineData("attribute_type(a, :v)", "Invalid ConditionExpression: Invalid attribute type name found; type: x, valid types: {B,NULL,SS,BOOL,L,BS,N,NS,S,M}")]
    [InlineData("a = a", "Invalid ConditionExpression: The first operand must be distinct from the remaining operands for this operator or function; operator: =, first operand: [a]")]
    [InlineData("a BETWEEN :n AND :v", "Invalid ConditionExpression: The BETWEEN operator requires same data type for lower and upper bounds; lower bound operand: AttributeValue: {N:1}, upper bound operand: AttributeValue: {S:x}")]
    [InlineData("a BETWEEN :n AND :zero", "Invalid ConditionExpression: The BETWEEN operator requires upper bound to be greater than or equal to lower bound; lower bound operand: AttributeValue: {N:1}, upper bound operand: AttributeValue: {N:0}")]
    [InlineData("nope(a)", "Invalid ConditionExpression: Invalid function name; function: nope")]
    [InlineData("status = :v", "Invalid ConditionExpression: Attribute name is a reserved keyword; reserved keyword: status")]
    public void Condition_Invalid_HasDynamoDbMessage(string expression, string message)
    {
        var error = Assert.Throws<DynamoException>(() =>
            ExpressionParser.ParseCondition(expression, "ConditionExpression", Context(null, """{":v":{"S":"x"},":n":{"N":"1"},":zero":{"N":"0"}}""")));
        Assert.Equal(message, error.Message);
    }

    [Fact]
    public void UnusedNamesAndValues_AreRefused()
    {
        var context = Context("""{"#a":"a","#b":"b"}""", """{":v":{"S":"x"}}""");
        ExpressionParser.ParseCondition("#a = :v", "ConditionExpression", context);
        var error = Assert.Throws<DynamoException>(context.CheckAllUsed);
        Assert.Equal("Value provided in ExpressionAttributeNames unused in expressions: keys: {#b}", error.Message);
        var values = Context(null, """{":v":{"S":"x"},":w":{"S":"y"}}""");
        ExpressionParser.ParseCondition("a = :v", "ConditionExpression", values);
        Assert.Equal("Value provided in ExpressionAttributeValues unused in expressions: keys: {:w}", Assert.Throws<DynamoException>(values.CheckAllUsed).Message);
    }

    private static Item Update(string expression, string values, string? item = null)
    {
        var context = Context("""{"#c":"count"}""", values);
        var actions = ExpressionParser.ParseUpdate(expression, context);
        return ExpressionEvaluator.ApplyUpdate(actions, item is null ? Sample : ItemOf(item));
    }

    private static string Json(AttributeValue? value)
    {
        var buffer = new System.Buffers.ArrayBufferWriter<byte>();
        using (var w = new Utf8JsonWriter(buffer))
        {
            value!.WriteTo(w);
        }
        return System.Text.Encoding.UTF8.GetString(buffer.WrittenSpan);
    }

    [Fact]
    public void Update_SetArithmeticListAppendIfNotExists()
    {
        var result = Update("SET n = n + :one, l = list_append(l, :more), #c = if_not_exists(#c, :zero) + :one, m.deep.w = :one, x = n - :one",
            """{":one":{"N":"1"},":more":{"L":[{"S":"end"}]},":zero":{"N":"0"}}""");
        Assert.Equal("""{"N":"6"}""", Json(result["n"]));
        Assert.Equal(4, result["l"].L.Count);
        Assert.Equal("""{"N":"1"}""", Json(result["count"]));
        Assert.Equal("""{"N":"1"}""", Json(result["m"].M["deep"].M["w"]));
        // Operands are read from the item before the update: n was 5.
        Assert.Equal("""{"N":"4"}""", Json(result["x"]));
    }

    [Fact]
    public void Update_RemoveListElementsByOriginalIndex()
    {
        var context = Context();
        var removed = ExpressionEvaluator.ApplyUpdate(ExpressionParser.ParseUpdate("REMOVE l[0], l[2], s", context), Sample);
        Assert.Single(removed["l"].L);
        Assert.Equal("""{"S":"two"}""", Json(removed["l"].L[0]));
        Assert.False(removed.ContainsKey("s"));
    }

    [Fact]
    public void Update_AddAndDeleteSets()
    {
        var result = Update("ADD tags :more, n :two, fresh :two DELETE nums :one", """{":more":{"SS":["y","z"]},":two":{"N":"2"},":one":{"NS":["1"]}}""");
        Assert.Equal(["x", "y", "z"], result["tags"].SS);
        Assert.Equal("""{"N":"7"}""", Json(result["n"]));
        Assert.Equal("""{"N":"2"}""", Json(result["fresh"]));
        Assert.Equal("""{"NS":["2"]}""", Json(result["nums"]));
        var emptied = Update("DELETE nums :all", """{":all":{"NS":["1","2"]}}""");
        Assert.False(emptied.ContainsKey("nums")); // a set emptied by DELETE is removed
    }

    [Theory]
    [InlineData("SET x = absent + :one", "The provided expression refers to an attribute that does not exist in the item")]
    [InlineData("SET x = s + :one", "An operand in the update expression has an incorrect data type")]
    [InlineData("SET nothere.x = :one", "The document path provided in the update expression is invalid for update")]
    [InlineData("ADD s :one", "An operand in the update expression has an incorrect data type")]
    public void Update_RuntimeErrors(string expression, string message)
    {
        var error = Assert.Throws<DynamoException>(() => Update(expression, """{":one":{"N":"1"}}"""));
        Assert.Equal(message, error.Message);
    }

    [Fact]
    public void Projection_KeepsNestedShape()
    {
        var context = Context();
        var projected = ExpressionEvaluator.Project(ExpressionParser.ParseProjection("m.deep.z, l[2], l[0], id, nothere", context), Sample);
        Assert.Equal(["m", "l", "id"], projected.Keys);
        Assert.Equal("""{"M":{"deep":{"M":{"z":{"N":"1"}}}}}""", Json(projected["m"]));
        Assert.Equal("""{"L":[{"N":"10"},{"M":{"q":{"BOOL":true}}}]}""", Json(projected["l"]));
    }
}
